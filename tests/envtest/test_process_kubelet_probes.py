"""The process kubelet reports a container `started` as a kubelet does: only once its
startupProbe answered (the operator rolls a replicated Queue's next pod on it, since a
standby broker is never Ready), and Ready not before; a pod deleted between its pass's
list and the bind is passed over, not a failed pass."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from nodes import Node
from operating import apply, get

pytestmark = pytest.mark.envtest

# Listens on --port only once the gate file exists: a server still starting, for as long
# as the test wants.
GATED_SERVER = """
import http.server, pathlib, sys, time
gate, port = pathlib.Path(sys.argv[1]), int(sys.argv[3])
while not gate.exists():
    time.sleep(0.1)
http.server.HTTPServer(("127.0.0.1", port), http.server.SimpleHTTPRequestHandler).serve_forever()
"""


def _container(pod: dict[str, Any] | None) -> dict[str, Any]:
    statuses = ((pod or {}).get("status") or {}).get("containerStatuses") or [{}]
    found: dict[str, Any] = statuses[0]
    return found


def test_a_container_is_started_only_once_its_startup_probe_answers(
        control_plane: Any, namespace: str, process_kubelet: Any, tmp_path: Path,
        eventually: Any) -> None:
    process_kubelet()
    gate = tmp_path / "open"
    apply(control_plane, namespace, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "gated"},
        "spec": {"containers": [{
            "name": "server", "image": "local/gated",
            "command": [sys.executable, "-c", GATED_SERVER, str(gate), "--port", "8080"],
            "ports": [{"name": "http", "containerPort": 8080}],
            "startupProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1,
                             "failureThreshold": 600}}]}})

    def running() -> dict[str, Any] | None:
        container = _container(get(control_plane, namespace, "pod", "gated"))
        return container if "running" in (container.get("state") or {}) else None

    container = eventually(running, "the gated container running", timeout=120)
    assert (container["started"], container["ready"]) == (False, False), container

    gate.touch()
    container = eventually(lambda: (c := _container(get(control_plane, namespace, "pod",
                                                         "gated"))).get("started") and c,
                           "started once its startup probe answered", timeout=120)
    assert "running" in container["state"]
    eventually(lambda: _container(get(control_plane, namespace, "pod", "gated")).get("ready"),
               "ready (no readiness probe) once started", timeout=60)


def test_a_pod_deleted_before_its_bind_is_passed_over(
        control_plane: Any, namespace: str, tmp_path: Path, eventually: Any) -> None:
    kubelet = Node(control_plane, [namespace], tmp_path).kubelets[0]  # not syncing
    apply(control_plane, namespace, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "gone"},
        "spec": {"containers": [{"name": "server", "image": "local/gone",
                                 "command": [sys.executable, "-c", "pass"]}]}})
    listed = get(control_plane, namespace, "pod", "gone")  # what a pass's list saw
    assert listed is not None and not listed["spec"].get("nodeName")
    control_plane.kubectl("delete", "-n", namespace, "pod", "gone", "--grace-period=0",
                          "--wait=false")
    eventually(lambda: get(control_plane, namespace, "pod", "gone") is None, "pod deleted",
               timeout=60)

    kubelet._run(listed)  # the pass goes on (it raised 404 from the bind)
    assert kubelet.containers == {}
