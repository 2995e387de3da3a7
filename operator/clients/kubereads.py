"""Kubernetes calls of `ferry-metrics-api`: list custom objects, read a ConfigMap, review access.

The `kubernetes` client is synchronous; its calls run in a worker thread. Failures are
translated once, here, into `KubernetesReadError`.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping, Sequence
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException


class KubernetesReadError(Exception):
    def __init__(self, what: str, status: int | None, message: str) -> None:
        super().__init__(message)
        self.what, self.status, self.message = what, status, message

    def __str__(self) -> str:
        return f"reading {self.what} failed ({self.status or 'no answer'}): {self.message}"


def api_client(kubeconfig: str | None) -> client.ApiClient:
    """In-cluster credentials in a pod, else the kubeconfig (or ~/.kube/config)."""
    if kubeconfig is None:
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
            return client.ApiClient()
        except config.ConfigException:
            pass
    api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=kubeconfig)
    return api


class KubeReader:
    def __init__(self, api: client.ApiClient) -> None:
        self._objects = client.CustomObjectsApi(api)
        self._core = client.CoreV1Api(api)

    async def list_objects(self, group: str, version: str, namespace: str,
                           plural: str) -> list[dict[str, Any]]:
        try:
            listed = await asyncio.to_thread(self._objects.list_namespaced_custom_object,
                                             group, version, namespace, plural)
        except ApiException as error:
            raise KubernetesReadError(f"{plural}.{group} in {namespace}", error.status,
                                      str(error.reason)) from error
        except OSError as error:
            raise KubernetesReadError(f"{plural}.{group} in {namespace}", None,
                                      str(error)) from error
        items = listed.get("items", []) if isinstance(listed, dict) else []
        return [item for item in items if isinstance(item, dict)]

    async def secret_value(self, namespace: str, name: str, key: str) -> str | None:
        """One key of a Secret, decoded; None when the Secret or the key is missing."""
        try:
            secret = await asyncio.to_thread(self._core.read_namespaced_secret, name, namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise KubernetesReadError(f"secret {namespace}/{name}", error.status,
                                      str(error.reason)) from error
        raw = (secret.data or {}).get(key)
        return base64.b64decode(raw).decode().strip() if raw else None

    async def configmap_data(self, namespace: str, name: str) -> dict[str, str]:
        try:
            configmap = await asyncio.to_thread(self._core.read_namespaced_config_map,
                                                name, namespace)
        except ApiException as error:
            raise KubernetesReadError(f"configmap {namespace}/{name}", error.status,
                                      str(error.reason)) from error
        return dict(configmap.data or {})


class AccessReviewer:
    """Delegated authorization: asks the API server whether a user may do something."""

    def __init__(self, api: client.ApiClient) -> None:
        self._authz = client.AuthorizationV1Api(api)

    async def allowed(self, *, user: str, groups: Sequence[str],
                      extra: Mapping[str, Sequence[str]], uid: str, verb: str, group: str,
                      resource: str, namespace: str) -> bool:
        review = client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
            user=user, groups=list(groups), uid=uid or None,
            extra={k: list(v) for k, v in extra.items()} or None,
            resource_attributes=client.V1ResourceAttributes(
                verb=verb, group=group, resource=resource, namespace=namespace)))
        try:
            answer = await asyncio.to_thread(self._authz.create_subject_access_review, review)
        except ApiException as error:
            raise KubernetesReadError("a SubjectAccessReview", error.status,
                                      str(error.reason)) from error
        return bool(answer.status and answer.status.allowed)
