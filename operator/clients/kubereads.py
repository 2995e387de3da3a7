"""Kubernetes calls of `ferry-metrics-api`: list custom objects, read a ConfigMap or a Secret's
key, review access. Built on the operator's one client (`kube.KubeClient`: aiohttp, one
session and TLS context); failures are translated once, here, into `KubernetesReadError`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from ferry.operator.clients.errors import KubeError
from ferry.operator.clients.kube import KubeClient, secret_value

SAR = ("authorization.k8s.io/v1", "SubjectAccessReview")


class KubernetesReadError(Exception):
    def __init__(self, what: str, status: int | None, message: str) -> None:
        super().__init__(message)
        self.what, self.status, self.message = what, status, message

    def __str__(self) -> str:
        return f"reading {self.what} failed ({self.status or 'no answer'}): {self.message}"


@contextmanager
def _reading(what: str) -> Iterator[None]:
    try:
        yield
    except KubeError as error:
        raise KubernetesReadError(what, error.status or None, error.message) from error


class KubeReader:
    def __init__(self, kube: KubeClient) -> None:
        self._kube = kube

    async def list_objects(self, group: str, version: str, namespace: str,
                           plural: str) -> list[dict[str, Any]]:
        kind = {"consumergroups": "ConsumerGroup", "queues": "Queue"}.get(plural, plural)
        with _reading(f"{plural}.{group} in {namespace}"):
            return await self._kube.list(f"{group}/{version}", kind, namespace, "")

    async def secret_value(self, namespace: str, name: str, key: str) -> str | None:
        """One key of a Secret, decoded; None when the Secret or the key is missing."""
        with _reading(f"secret {namespace}/{name}"):
            return secret_value(await self._kube.get("v1", "Secret", namespace, name), key)

    async def configmap_data(self, namespace: str, name: str) -> dict[str, str]:
        with _reading(f"configmap {namespace}/{name}"):
            found = await self._kube.get("v1", "ConfigMap", namespace, name)
        if found is None:
            raise KubernetesReadError(f"configmap {namespace}/{name}", 404, "not found")
        return {str(k): str(v) for k, v in (found.get("data") or {}).items()}


class AccessReviewer:
    """Delegated authorization: asks the API server whether a user may do something."""

    def __init__(self, kube: KubeClient) -> None:
        self._kube = kube

    async def allowed(self, *, user: str, groups: Sequence[str],
                      extra: Mapping[str, Sequence[str]], uid: str, verb: str, group: str,
                      resource: str, namespace: str) -> bool:
        spec: dict[str, Any] = {
            "user": user, "groups": list(groups),
            "resourceAttributes": {"verb": verb, "group": group, "resource": resource,
                                   "namespace": namespace}}
        if uid:
            spec["uid"] = uid
        if extra:
            spec["extra"] = {k: list(v) for k, v in extra.items()}
        review = {"apiVersion": SAR[0], "kind": SAR[1], "metadata": {}, "spec": spec}
        with _reading("a SubjectAccessReview"):
            answer = await self._kube.create(review)
        return bool(((answer or {}).get("status") or {}).get("allowed"))
