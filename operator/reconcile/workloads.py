"""Pieces every Ferry pod spec shares: security contexts, probes, resources."""

from __future__ import annotations

from ferry.operator.reconcile.metadata import Manifest
from ferry.operator.reconcile.specs import Resources


def pod_security() -> Manifest:
    return {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"}}


def container_security() -> Manifest:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]}}


def http_probe(path: str, period: int) -> Manifest:
    return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period,
            "failureThreshold": 3, "timeoutSeconds": 2}


def resources(spec: Resources) -> Manifest:
    return {k: dict(v) for k, v in spec.model_dump().items() if v}
