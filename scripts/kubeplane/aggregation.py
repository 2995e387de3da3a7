"""Register an aggregated API served by a process on this machine (no side effects but certs).

The API server proxies `/apis/<group>/<version>` to the APIService's Service. There is no
kube-proxy here and endpoint addresses may not be loopback, so the Service is of type
ExternalName `localhost`: the aggregator (routing off) dials https://localhost:<port>,
checks the serving certificate against the APIService's caBundle for the name
`<service>.<namespace>.svc`, and presents the front-proxy client certificate with the
user in X-Remote-User / X-Remote-Group (verify it with `PlanePaths.front_proxy_ca`).
In a real cluster the same APIService points at an ordinary ClusterIP Service instead.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kubeplane import pki


def service_host(namespace: str, service: str) -> str:
    """The name the aggregator expects in the serving certificate."""
    return f"{service}.{namespace}.svc"


def serving_cert(directory: Path, namespace: str, service: str) -> tuple[pki.KeyPair, pki.KeyPair]:
    """(serving key pair, its CA) for a local aggregated API server; made once per directory."""
    ca = pki.make_ca(pki.KeyPair(directory / "ca.crt", directory / "ca.key"), f"{service}-ca")
    host = service_host(namespace, service)
    cert = pki.issue(pki.KeyPair(directory / "tls.crt", directory / "tls.key"), ca, host,
                     pki.Usage.SERVER, hosts=(host, "localhost", "127.0.0.1"))
    return cert, ca


def manifests(group: str, version: str, *, namespace: str, service: str, port: int,
              ca_bundle: bytes, group_priority: int = 100) -> list[dict[str, Any]]:
    """Service + APIService routing `group/version` to https://localhost:`port`."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": service, "namespace": namespace},
            "spec": {"type": "ExternalName", "externalName": "localhost",
                     "ports": [{"name": "https", "port": port, "protocol": "TCP"}]},
        },
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": f"{version}.{group}"},
            "spec": {
                "group": group,
                "version": version,
                "service": {"namespace": namespace, "name": service, "port": port},
                "caBundle": base64.b64encode(ca_bundle).decode(),
                "groupPriorityMinimum": group_priority,
                "versionPriority": 100,
            },
        },
    ]


def available(apiservice: Mapping[str, Any]) -> bool:
    """Whether an APIService (as read back) is Available: the aggregator reaches its server."""
    conditions = (apiservice.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Available" and c["status"] == "True" for c in conditions)
