"""Fixtures for tests against a real control plane (etcd, kube-apiserver, kube-controller-manager).

Stable names other tiers and helpers build on:

control_plane (session)  `kubeplane.ControlPlane`, started once per session in a temporary
                         directory from the binaries `make envtest` built (missing binaries
                         fail with that instruction). Attributes: `server` (https URL),
                         `kubeconfig` (Path; admin in system:masters), `kubectl(*args,
                         input=None, check=True)` -> CompletedProcess[str],
                         `kubectl_json(*args)`, `paths` (pki files incl. `front_proxy_ca`,
                         `logs/`), `versions`. Stopped at session end; if pytest itself
                         dies the kernel kills the servers (PR_SET_PDEATHSIG).
namespace (function)     the name of a fresh namespace for this test, deleted afterwards.
kube_api (function)      `kubernetes.client.ApiClient` for the admin, closed afterwards.
eventually (function)    `eventually(probe, what, timeout=120)`: polls `probe()` until it
                         returns something other than None/False and returns that; fails
                         with `what` if it never does (a liveness bound, not a timing check).
process_kubelet (function)  `process_kubelet(fixed_ports=None, every=0.5, **node_options)`
                         -> `nodes.Node` running the test's namespace's pods as local
                         processes, synced every `every` s on a background thread (None:
                         only when the test calls `sync()`); `fixed_ports` maps (component
                         label, containerPort) to a local port, e.g. {("broker", 7070):
                         port}. Stopped, its Node removed, at teardown.

The plane has no kubelet or kube-proxy: Pods are created but never run (process_kubelet
runs them).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from nodes import Node
from testsupport import waiting

from kubeplane import ControlPlane, ControlPlaneError, start, stop


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    directory: Path = tmp_path_factory.mktemp("controlplane")
    try:
        plane = start(directory, die_with_parent=True)
    except ControlPlaneError as error:
        pytest.fail(f"could not start the envtest control plane: {error}", pytrace=False)
    try:
        yield plane
    finally:
        stop(directory)


@pytest.fixture
def kube_api(control_plane: ControlPlane) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    try:
        yield api
    finally:
        api.close()


def _namespace_name(test_name: str) -> str:
    stem = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    return f"{stem}-{secrets.token_hex(3)}"


@pytest.fixture
def namespace(kube_api: client.ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    name = _namespace_name(request.node.name)
    core = client.CoreV1Api(kube_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    try:
        core.delete_namespace(name)
    except ApiException as error:
        if error.status != 404:
            raise


@pytest.fixture
def eventually() -> Callable[..., Any]:
    return waiting.eventually


@pytest.fixture
def process_kubelet(control_plane: ControlPlane, namespace: str, tmp_path: Path,
                    monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Node]]:
    # Pods' commands (ferry-broker, ferry-collector...) are this environment's scripts.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    with contextlib.ExitStack() as started:

        def start(fixed_ports: Mapping[tuple[str, int], int] | None = None,
                  every: float | None = 0.5, **options: Any) -> Node:
            node = Node(control_plane, [namespace], tmp_path, fixed_ports=fixed_ports, **options)
            started.callback(node.stop)
            if every is not None:
                started.enter_context(node.syncing(every))
            return node

        yield start
