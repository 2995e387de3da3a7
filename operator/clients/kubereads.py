"""Kubernetes calls of `ferry-metrics-api`: list custom objects, read a ConfigMap or a Secret's
key, review access. Built on the operator's one client (`kube.KubeClient`: aiohttp, one
session and TLS context); failures are translated once, here, into `KubernetesReadError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


def _failed(what: str, error: KubeError) -> KubernetesReadError:
    return KubernetesReadError(what, error.status or None, error.message)


class KubeReader:
    def __init__(self, kube: KubeClient) -> None:
        self._kube = kube

    async def list_objects(self, group: str, version: str, namespace: str,
                           plural: str) -> list[dict[str, Any]]:
        kind = {"consumergroups": "ConsumerGroup", "queues": "Queue"}.get(plural, plural)
        try:
            return await self._kube.list(f"{group}/{version}", kind, namespace, "")
        except KubeError as error:
            raise _failed(f"{plural}.{group} in {namespace}", error) from error

    async def secret_value(self, namespace: str, name: str, key: str) -> str | None:
        """One key of a Secret, decoded; None when the Secret or the key is missing."""
        try:
            return secret_value(await self._kube.get("v1", "Secret", namespace, name), key)
        except KubeError as error:
            raise _failed(f"secret {namespace}/{name}", error) from error

    async def configmap_data(self, namespace: str, name: str) -> dict[str, str]:
        try:
            found = await self._kube.get("v1", "ConfigMap", namespace, name)
        except KubeError as error:
            raise _failed(f"configmap {namespace}/{name}", error) from error
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
        try:
            answer = await self._kube.create(review)
        except KubeError as error:
            raise _failed("a SubjectAccessReview", error) from error
        return bool(((answer or {}).get("status") or {}).get("allowed"))
