"""Tenancy: managed brokers require a token, external brokers need permission and a
connection Secret, and status never echoes what a remote end says.

The token test runs the broker pod itself through the process kubelet: the broker reads
its token files from the Secret volume the operator mounted (scoped tokens in a key added
to it), and the operator talks to it with the token from that Secret.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from operating import apply, condition, cr, get, on_broker, reconciled
from testsupport.ports import free_port

from ferry.broker.client import BrokerClient, BrokerError

pytestmark = pytest.mark.envtest


def _status(url: str, token: str | None, call: Callable[[BrokerClient], Awaitable[Any]]) -> int:
    """HTTP status of one call with this token (200 or the refusal; 0: no answer)."""
    async def run(client: BrokerClient) -> int:
        try:
            await call(client)
        except BrokerError as e:
            return e.status
        return 200
    return on_broker(url, run, token)


def _call(url: str, token: str | None) -> int:
    """HTTP status of listing the broker's queues with this token."""
    return _status(url, token, lambda client: client.list_queues())


def _create(url: str, token: str) -> int:
    """HTTP status of creating a queue with this token."""
    return _status(url, token, lambda client: client.put_queue("elsewhere"))


def test_a_managed_broker_requires_the_token_from_its_secret(
        control_plane: Any, namespace: str, run_operator: Any, process_kubelet: Any,
        eventually: Any) -> None:
    port = free_port()
    process_kubelet({("broker", 7070): port})
    url = f"http://127.0.0.1:{port}"
    run_operator(broker_url=url)
    apply(control_plane, namespace, cr("Queue", "orders", {}))
    eventually(lambda: reconciled(control_plane, namespace, "queue", "orders"),
               "the Queue is Ready on its (token-protected) broker",
               timeout=180)
    secret = get(control_plane, namespace, "secret", "orders-broker-token")
    queue = get(control_plane, namespace, "queue", "orders")
    assert secret is not None and queue is not None
    assert secret["metadata"]["ownerReferences"][0]["uid"] == queue["metadata"]["uid"]
    token = base64.b64decode(secret["data"]["token"]).decode()
    assert len(token) >= 32
    assert queue["status"]["tokenSecret"] == {"name": "orders-broker-token", "key": "token"}
    assert _call(url, None) == 401
    assert _call(url, "not-the-token") == 401
    assert _call(url, token) == 200
    # Scoped tokens: a key added to the same Secret, read when the broker pod starts again.
    control_plane.kubectl("patch", "secret", "-n", namespace, "orders-broker-token", "-p",
                          json.dumps({"stringData": {"tokens": "r3ader read queues=orders\n"}}))
    control_plane.kubectl("delete", "pod", "-n", namespace, "orders-broker-0", "--wait=false")
    eventually(lambda: _call(url, "r3ader") == 200, "the broker to take the Secret's new key",
               timeout=180)
    assert _create(url, "r3ader") == 403  # read only
    assert _call(url, token) == 200  # the operator's own token is still admin


def test_external_brokers_only_from_permitted_namespaces(
        control_plane: Any, namespace: str, broker_factory: Any, run_operator: Any,
        eventually: Any, tmp_path: Any) -> None:
    (tmp_path / "tokens").write_text("ext-token\n")
    external = broker_factory("--token-file", str(tmp_path / "tokens"))
    control_plane.kubectl("create", "secret", "generic", "-n", namespace, "ext-conn",
                          "--from-literal=token=ext-token")
    spec = {"broker": {"url": external.url, "connectionSecret": {"name": "ext-conn"}}}
    refusing = run_operator()
    apply(control_plane, namespace, cr("Queue", "remote", spec))
    eventually(lambda: condition(get(control_plane, namespace, "queue", "remote"), "Degraded")
               == ("True", "ExternalBrokerNotAllowed"), "an unlisted namespace is refused")
    assert _queues(external.url) == []  # nothing was sent to it
    refusing.process.stop()
    run_operator("--external-broker-namespaces", namespace)
    eventually(lambda: reconciled(control_plane, namespace, "queue", "remote"),
               "a listed namespace uses the broker with its token")
    assert _queues(external.url) == ["remote"]


def test_a_connection_secret_is_required_with_a_url(control_plane: Any, namespace: str,
                                                    ferry_crds: None) -> None:
    result = apply(control_plane, namespace, cr("Queue", "bare", {"broker": {"url": "http://x:1"}}),
                   check=False)
    assert result.returncode != 0 and "broker.url needs broker.connectionSecret" in result.stderr


class Chatty(BaseHTTPRequestHandler):
    """Not a broker: answers every call with a page of internal-looking secrets."""

    def _answer(self) -> None:
        body = b"INTERNAL-SECRET-PAGE: db password hunter2"
        self.send_response(418)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer()

    def do_PUT(self) -> None:
        self._answer()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def chatty() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Chatty)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def test_status_never_echoes_the_remote_end(control_plane: Any, namespace: str,
                                            run_operator: Any, eventually: Any,
                                            chatty: str) -> None:
    control_plane.kubectl("create", "secret", "generic", "-n", namespace, "conn",
                          "--from-literal=token=t")
    run_operator("--external-broker-namespaces", namespace)
    apply(control_plane, namespace, cr("Queue", "probe", {"broker": {
        "url": chatty, "connectionSecret": {"name": "conn"}}}))
    found = eventually(lambda: (q := get(control_plane, namespace, "queue", "probe"))
                       and condition(q, "Degraded") == ("True", "BrokerRejected") and q,
                       "the Queue is Degraded/BrokerRejected")
    text = json.dumps(found["status"])
    assert "INTERNAL-SECRET" not in text and "hunter2" not in text
    (degraded,) = [c for c in found["status"]["conditions"] if c["type"] == "Degraded"]
    assert "HTTP 418" in degraded["message"] and len(degraded["message"]) < 200


def _queues(url: str) -> list[str]:
    return [q.queue for q in on_broker(url, lambda c: c.list_queues(), "ext-token")]
