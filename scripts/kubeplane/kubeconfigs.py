"""Kubeconfig files for a plane's clients (JSON, which kubectl and every client read as YAML)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from kubeplane.pki import KeyPair

CLUSTER = "ferry-envtest"


def _data(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write(target: Path, server: str, ca: KeyPair, client: KeyPair, *, user: str) -> None:
    """A kubeconfig for `user` with its certificate embedded, so the file stands alone."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CLUSTER, "cluster": {
            "server": server, "certificate-authority-data": _data(ca.cert)}}],
        "users": [{"name": user, "user": {
            "client-certificate-data": _data(client.cert),
            "client-key-data": _data(client.key)}}],
        "contexts": [{"name": CLUSTER, "context": {"cluster": CLUSTER, "user": user}}],
        "current-context": CLUSTER,
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(config, indent=2) + "\n")
    target.chmod(0o600)
