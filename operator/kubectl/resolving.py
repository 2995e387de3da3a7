"""Which broker serves a Queue, as the operator sees it, and the token to send there.

The Queue's status holds both: `endpoint` (the broker URL the operator uses) and
`tokenSecret` (the Secret key with the token). An in-cluster Service URL
(`http://<name>.<ns>.svc:<port>`) is not reachable from a laptop, so it is reached through
`kubectl port-forward service/<name>`, as kubectl users expect.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ferry.operator.clients.errors import KubeError
from ferry.operator.clients.kube import KubeClient, secret_value
from ferry.operator.reconcile.metadata import API_VERSION

_SERVICE_HOST = re.compile(r"^(?P<name>[a-z0-9-]+)\.(?P<ns>[a-z0-9-]+)\.svc(\.cluster\.local)?$")
_FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+)")


class PluginError(Exception):
    """Something the user must fix or know; the message is the whole story."""


@dataclass(frozen=True)
class Target:
    namespace: str
    queue: str
    url: str
    token: str | None


async def _get(kube: KubeClient, kind: str, namespace: str, name: str) -> dict[str, Any]:
    try:
        found = await kube.get(API_VERSION, kind, namespace, name)
    except KubeError as e:
        raise PluginError(f"cannot read {kind} {namespace}/{name}: {e}") from e
    if found is None:
        raise PluginError(f"{kind} {namespace}/{name} not found")
    return found


async def queue_target(kube: KubeClient, namespace: str, queue: dict[str, Any]) -> Target:
    """The broker of a Queue object (as listed or read), with its token."""
    name = queue["metadata"]["name"]
    status = queue.get("status") or {}
    url = status.get("endpoint")
    if not url:
        raise PluginError(f"Queue {namespace}/{name} has no broker yet (status.endpoint is "
                          "empty: is ferry-operator running?)")
    token = None
    ref = status.get("tokenSecret") or {}
    if ref.get("name"):
        try:
            secret = await kube.get("v1", "Secret", namespace, ref["name"])
        except KubeError as e:
            raise PluginError(f"cannot read Secret {namespace}/{ref['name']} with the broker's "
                              f"token: {e}") from e
        token = secret_value(secret, ref.get("key") or "token")
        if token is None:
            raise PluginError(f"Secret {namespace}/{ref['name']} has no token under key "
                              f"{ref.get('key') or 'token'!r}")
    return Target(namespace=namespace, queue=name, url=str(url).rstrip("/"), token=token)


async def named_queue(kube: KubeClient, namespace: str, name: str) -> Target:
    return await queue_target(kube, namespace, await _get(kube, "Queue", namespace, name))


async def group_queue(kube: KubeClient, namespace: str, group: str) -> Target:
    """The broker of a ConsumerGroup's Queue (the group's name on the broker is its own)."""
    found = await _get(kube, "ConsumerGroup", namespace, group)
    return await named_queue(kube, namespace, found["spec"]["queue"])


@contextlib.contextmanager
def reachable(url: str, kubectl: list[str]) -> Iterator[str]:
    """`url` itself, or a local port-forward to the in-cluster Service it names."""
    parts = urlsplit(url)
    match = _SERVICE_HOST.match(parts.hostname or "")
    if match is None:
        yield url
        return
    port = parts.port or 80
    forward = subprocess.Popen(
        [*kubectl, "port-forward", "-n", match["ns"], f"service/{match['name']}", f":{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert forward.stdout is not None
        line = forward.stdout.readline()
        found = _FORWARDING.search(line)
        if found is None:
            error = forward.stderr.read() if forward.stderr and forward.poll() is not None else ""
            raise PluginError(f"kubectl port-forward to service/{match['name']} failed: "
                              f"{(error or line).strip()}")
        yield f"http://127.0.0.1:{found.group(1)}"
    finally:
        forward.terminate()
        forward.wait(10)
