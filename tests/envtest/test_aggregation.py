"""The aggregation layer works: an APIService routes to a TLS server on this machine.

This is the path the External Metrics API (queue lag for HPAs) takes, so the front-proxy
wiring is checked end to end: the local server only accepts the API server's front-proxy
client certificate and learns the caller from the X-Remote-* headers.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from kubeplane import ControlPlane, aggregation

pytestmark = pytest.mark.envtest

GROUP, VERSION = "echo.envtest.ferry.dev", "v1"
RESOURCES = {
    "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{GROUP}/{VERSION}",
    "resources": [{"name": "whoami", "singularName": "whoami", "namespaced": False,
                   "kind": "WhoAmI", "verbs": ["get"]}],
}


class _EchoHandler(BaseHTTPRequestHandler):
    """Serves discovery for GROUP/VERSION and echoes who the API server says is asking."""

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == f"/apis/{GROUP}/{VERSION}":
            self._json(200, RESOURCES)
        elif path == f"/apis/{GROUP}/{VERSION}/whoami":
            assert isinstance(self.connection, ssl.SSLSocket)
            peer = self.connection.getpeercert() or {}
            subject = {key: value for rdn in peer.get("subject", ()) for key, value in rdn}
            self._json(200, {"user": self.headers.get("X-Remote-User"),
                             "groups": self.headers.get_all("X-Remote-Group") or [],
                             "proxy": subject.get("commonName")})
        else:
            self._json(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                             "reason": "NotFound", "code": 404})

    def _json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def echo_server(control_plane: ControlPlane, tmp_path: Path) -> Iterator[tuple[int, bytes]]:
    """(port, CA bundle) of a local aggregated API server, stopped after the test."""
    cert, ca = aggregation.serving_cert(tmp_path, "default", "echo")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert.cert, cert.key)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=control_plane.paths.front_proxy_ca.cert)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], ca.cert.read_bytes()
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_apiservice_routes_to_a_local_server_through_the_front_proxy(
    control_plane: ControlPlane, echo_server: tuple[int, bytes], eventually: Callable[..., Any]
) -> None:
    port, ca_bundle = echo_server
    manifests = aggregation.manifests(GROUP, VERSION, namespace="default", service="echo",
                                      port=port, ca_bundle=ca_bundle)
    document = json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests})
    control_plane.kubectl("apply", "-f", "-", input=document)
    try:
        def available() -> bool:
            return aggregation.available(
                control_plane.kubectl_json("get", "apiservice", f"{VERSION}.{GROUP}"))

        eventually(available, f"APIService {VERSION}.{GROUP} becomes Available")
        whoami = control_plane.kubectl("get", "--raw", f"/apis/{GROUP}/{VERSION}/whoami")
        answer = json.loads(whoami.stdout)
        assert answer["user"] == "ferry-admin"
        assert "system:masters" in answer["groups"]
        assert answer["proxy"] == "front-proxy-client"
    finally:
        control_plane.kubectl("delete", "-f", "-", "--wait=false", input=document)
