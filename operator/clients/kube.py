"""A small async Kubernetes client: server-side apply, get, list, delete.

aiohttp with the credentials of a kubeconfig (or the pod's service account), so the
operator's Kubernetes I/O never blocks the event loop that kopf shares with it. One
session and one TLS context for the client's life: aiohttp pools connections per SSL
context, so a context built per call meant a new TCP connection and TLS handshake per
call. Only the bearer token is read again per call (a projected token rotates).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import ssl
from typing import Any
from urllib.parse import urlencode

import aiohttp
from kubernetes import config as kubeconfig
from kubernetes.client import Configuration

from ferry.operator.clients.errors import KubeError, KubeNotFound
from ferry.operator.identity import API_VERSION, FIELD_MANAGER, KEDA_API_VERSION

Obj = dict[str, Any]
SCALE_MANAGER = "ferry-autoscaler"  # the 0 <-> 1 step of scale-to-zero

# Every kind the operator (and ferry-metrics-api, kubectl ferry) touches, with its plural:
# the same list RBAC grants.
PLURALS: dict[tuple[str, str], str] = {
    ("v1", "ConfigMap"): "configmaps",
    ("v1", "PersistentVolumeClaim"): "persistentvolumeclaims",  # grown with spec.storage
    ("storage.k8s.io/v1", "StorageClass"): "storageclasses",  # may its volumes grow?
    ("v1", "Service"): "services",
    ("v1", "Pod"): "pods",
    ("v1", "Secret"): "secrets",
    ("apps/v1", "StatefulSet"): "statefulsets",
    ("apps/v1", "Deployment"): "deployments",
    ("policy/v1", "PodDisruptionBudget"): "poddisruptionbudgets",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "horizontalpodautoscalers",
    (KEDA_API_VERSION, "ScaledObject"): "scaledobjects",
    (KEDA_API_VERSION, "TriggerAuthentication"): "triggerauthentications",
    ("authorization.k8s.io/v1", "SubjectAccessReview"): "subjectaccessreviews",  # cluster
    (API_VERSION, "Queue"): "queues",
    (API_VERSION, "ConsumerGroup"): "consumergroups",
    (API_VERSION, "TelemetryPipeline"): "telemetrypipelines",
}


def load_credentials(kubeconfig_path: str | None = None) -> Configuration:
    """In a pod: the service account; elsewhere: the kubeconfig (KUBECONFIG or ~/.kube)."""
    cfg = Configuration()
    try:
        kubeconfig.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    except kubeconfig.ConfigException:
        kubeconfig.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig_path, client_configuration=cfg)
    return cfg


def bearer(cfg: Configuration) -> str | None:
    """The Authorization header value of a token login (kubeconfig or service account).

    The kubernetes library keeps it as api_key["BearerToken"] ("Bearer <token>") and
    refreshes it through a hook when the token file rotates.
    """
    token = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix(
        "authorization")
    if not token:
        return None
    return str(token) if str(token).startswith("Bearer ") else f"Bearer {token}"


def _tls(cfg: Configuration) -> ssl.SSLContext | bool:
    context: ssl.SSLContext | bool = False
    if cfg.verify_ssl:
        context = ssl.create_default_context(cafile=cfg.ssl_ca_cert)
        if cfg.cert_file:
            context.load_cert_chain(cfg.cert_file, cfg.key_file)
    return context


def secret_value(secret: Obj | None, key: str) -> str | None:
    """One key of a Secret as the API returns it (base64 in data), decoded and stripped;
    None when the Secret, the key or a readable value is missing."""
    data = (secret or {}).get("data")
    raw = data.get(key) if isinstance(data, dict) else None
    if not isinstance(raw, str):
        return None
    try:
        return base64.b64decode(raw, validate=True).decode().strip() or None
    except (binascii.Error, UnicodeDecodeError):
        return None


def path(api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
    """The object's URL path; namespace "" for a cluster-scoped kind."""
    try:
        plural = PLURALS[(api_version, kind)]
    except KeyError as e:
        raise KubeError(0, "UnknownKind", f"{FIELD_MANAGER} does not manage {kind}") from e
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    # No namespace: the collection across every namespace (lists only).
    out = f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"
    return f"{out}/{name}" if name else out


# Calls in flight at once, per client (client-go rate-limits its clients the same way): a
# burst of hundreds of objects queues here instead of in a CPU-starved API server, where
# 300 concurrent Service applies waited past any timeout and were all sent again.
MAX_IN_FLIGHT = 32


class KubeClient:
    def __init__(self, cfg: Configuration, *, timeout: float = 30.0,
                 max_in_flight: int = MAX_IN_FLIGHT) -> None:
        self._cfg = cfg
        self._tls = _tls(cfg)
        self._slots = asyncio.Semaphore(max_in_flight)
        # The timeout bounds the API server's silence (connecting, then between reads), not
        # the whole call: under a burst (hundreds of objects created at once) calls wait
        # for a pooled connection, and a total timeout would fail them for having queued.
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(
            total=None, sock_connect=timeout, sock_read=timeout))

    async def close(self) -> None:
        await self._session.close()

    async def _call(self, method: str, url_path: str, *, query: dict[str, str] | None = None,
                    body: Obj | None = None, content_type: str = "application/json"
                    ) -> tuple[int, Obj]:
        url = self._cfg.host.rstrip("/") + url_path + (f"?{urlencode(query)}" if query else "")
        headers = {"Accept": "application/json"}
        if token := bearer(self._cfg):  # read per call: a projected token rotates
            headers["Authorization"] = token
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body)
        try:
            async with self._slots, self._session.request(
                    method, url, data=data, headers=headers, ssl=self._tls) as response:
                text = await response.text()
                try:
                    payload = json.loads(text) if text else {}
                except ValueError:
                    payload = text
                if response.status >= 400:
                    raise _error(response.status, payload)
                return response.status, payload if isinstance(payload, dict) else {}
        except aiohttp.ClientError as e:
            raise KubeError(0, "Unreachable", f"{method} {url_path}: {e}") from e
        except TimeoutError as e:  # aiohttp's own timeouts are ClientErrors; this is not
            raise KubeError(0, "Timeout", f"{method} {url_path}: no answer in time") from e

    async def serves(self, api_version: str, plural: str) -> bool:
        """Whether the API server serves this resource now (e.g. its CRD is installed)."""
        found = await self.read(f"/apis/{api_version}") or {}
        return any(r.get("name") == plural for r in found.get("resources", []))

    async def apply(self, manifest: Obj) -> tuple[Obj, bool]:
        """Server-side apply as FIELD_MANAGER, taking over conflicting fields (force).

        Returns the object and whether this call created it (the API server answers 201).
        """
        meta = manifest["metadata"]
        status, obj = await self._call(
            "PATCH", path(manifest["apiVersion"], manifest["kind"], meta["namespace"],
                          meta["name"]),
            query={"fieldManager": FIELD_MANAGER, "force": "true"}, body=manifest,
            content_type="application/apply-patch+yaml")
        return obj, status == 201

    async def create(self, manifest: Obj) -> Obj | None:
        """Create the object; None when one of that name exists already (409)."""
        meta = manifest["metadata"]
        try:
            _, obj = await self._call("POST", path(manifest["apiVersion"], manifest["kind"],
                                                   meta.get("namespace", "")),
                                      query={"fieldManager": FIELD_MANAGER}, body=manifest)
        except KubeError as e:
            if e.status == 409:
                return None
            raise
        return obj

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> Obj | None:
        obj = await self.read(path(api_version, kind, namespace, name))
        return None if obj is None else {"apiVersion": api_version, "kind": kind, **obj}

    async def read(self, url_path: str) -> Obj | None:
        """GET any API path (discovery, a cluster-scoped object); None when it is not there."""
        try:
            _, found = await self._call("GET", url_path)
        except KubeNotFound:
            return None
        return found

    async def list(self, api_version: str, kind: str, namespace: str, selector: str) -> list[Obj]:
        _, found = await self._call("GET", path(api_version, kind, namespace),
                                 query={"labelSelector": selector})
        return [{"apiVersion": api_version, "kind": kind, **o} for o in found.get("items", [])]

    async def patch(self, api_version: str, kind: str, namespace: str, name: str,
                    body: Obj, subresource: str = "", manager: str = FIELD_MANAGER) -> Obj:
        """A JSON merge patch as `manager` (fields server-side apply cannot own, such as a
        bound claim's size); `subresource` "status" for a resource's status."""
        target = path(api_version, kind, namespace, name)
        _, obj = await self._call("PATCH", f"{target}/{subresource}" if subresource else target,
                                  query={"fieldManager": manager}, body=body,
                                  content_type="application/merge-patch+json")
        return obj

    async def delete(self, api_version: str, kind: str, namespace: str, name: str,
                     propagation: str = "Background", uid: str = "") -> bool:
        """Delete; Background garbage-collects dependents, Orphan leaves them running.
        False if absent, or (given `uid`) if the object of that name is another one now."""
        body: Obj = {"propagationPolicy": propagation}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            await self._call("DELETE", path(api_version, kind, namespace, name), body=body)
        except KubeNotFound:
            return False
        except KubeError as e:
            if uid and e.status == 409:  # the precondition failed: that object is gone
                return False
            raise
        return True

    async def annotate(self, api_version: str, kind: str, namespace: str, name: str,
                       annotations: dict[str, str]) -> None:
        """Set annotations with a merge patch (the rest of the object is someone else's)."""
        await self.patch(api_version, kind, namespace, name,
                         {"metadata": {"annotations": annotations}})

    async def replicas(self, api_version: str, kind: str, namespace: str,
                       name: str) -> int | None:
        """spec.replicas of a scalable workload, read through its scale subresource."""
        scale = await self.read(path(api_version, kind, namespace, name) + "/scale")
        return None if scale is None else int((scale.get("spec") or {}).get("replicas", 0))

    async def scale(self, api_version: str, kind: str, namespace: str, name: str,
                    replicas: int) -> None:
        """Set replicas through the scale subresource, as the HPA controller does.

        A merge patch under its own field manager: the operator's server-side apply of a
        workload never lists replicas, so neither takes the field from the other.
        """
        await self.patch(api_version, kind, namespace, name, {"spec": {"replicas": replicas}},
                         "scale", SCALE_MANAGER)


def _error(status: int, payload: Any) -> KubeError:
    body = payload if isinstance(payload, dict) else {}
    reason, message = str(body.get("reason", "")), str(body.get("message", payload))
    cls = KubeNotFound if status == 404 else KubeError
    return cls(status, reason, message)
