"""TelemetryPipeline -> child Queue and ConsumerGroup, streamer StatefulSet, collector and API
Deployments; status from the children.

Streamers split one input by instance index, which only a StatefulSet gives its pods (the
`apps.kubernetes.io/pod-index` label), so they run as a StatefulSet. Collectors run as a
Deployment without `replicas`: the child ConsumerGroup's autoscaling owns that field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from ferry.operator.reconcile.conditions import Phase, Reason, Verdict, conditions, holds
from ferry.operator.reconcile.metadata import (
    API_VERSION,
    QUEUE,
    Manifest,
    child_metadata,
    selector_labels,
)
from ferry.operator.reconcile.readiness import is_ready, is_workload, rollout_gap
from ferry.operator.reconcile.specs import KeyRef, Owner, PodTemplate, TelemetryPipelineSpec
from ferry.operator.reconcile.tenancy import token_ref
from ferry.operator.reconcile.workloads import (
    PodDefaults,
    container_security,
    http_probe,
    overlay,
    pod,
    resources,
)

API_PORT = 8080
DATA_DIR = "/var/lib/ferry"
SOURCE_DIR = "/etc/ferry/source"
SQLITE_URL = f"sqlite://{DATA_DIR}/telemetry.db"
METRICS_PORT = 9102  # streamers' and collectors' /metrics and /healthz


def queue_name(owner: Owner) -> str:
    return owner.name


def group_name(owner: Owner) -> str:
    return f"{owner.name}-collectors"


def streamer_name(owner: Owner) -> str:
    return f"{owner.name}-streamer"


def collector_name(owner: Owner) -> str:
    return f"{owner.name}-collector"


def api_name(owner: Owner) -> str:
    return f"{owner.name}-api"


def children(owner: Owner, spec: TelemetryPipelineSpec, broker_url: str,
             defaults: PodDefaults) -> list[Manifest]:
    """Every child, in the order they are applied; `broker_url` is what pods connect to."""
    out = [_queue(owner, spec), _group(owner, spec),
           _streamer(owner, spec, broker_url, defaults),
           _collector(owner, spec, broker_url, defaults)]
    if spec.api.enabled:
        out += [_api(owner, spec, defaults), _api_service(owner)]
    return out


def _meta(owner: Owner, name: str, component: str) -> Manifest:
    return child_metadata(owner, name, component, **{QUEUE: queue_name(owner)})


def _queue(owner: Owner, spec: TelemetryPipelineSpec) -> Manifest:
    return {
        "apiVersion": API_VERSION,
        "kind": "Queue",
        "metadata": _meta(owner, queue_name(owner), "queue"),
        "spec": spec.queue.model_dump(mode="json", by_alias=True, exclude_none=True),
    }


def _group(owner: Owner, spec: TelemetryPipelineSpec) -> Manifest:
    collector = spec.collector
    return {
        "apiVersion": API_VERSION,
        "kind": "ConsumerGroup",
        "metadata": _meta(owner, group_name(owner), "collector"),
        "spec": {
            "queue": queue_name(owner),
            "startAt": "Earliest",
            "deletionPolicy": spec.queue.deletion_policy.value,
            "autoscaling": {
                "target": {"apiVersion": "apps/v1", "kind": "Deployment",
                           "name": collector_name(owner)},
                "minReplicas": collector.min_replicas,
                "maxReplicas": collector.max_replicas,
                "lagPerReplica": collector.lag_per_replica,
            },
        },
    }


def _metrics_port() -> Manifest:
    return {"name": "metrics", "containerPort": METRICS_PORT}


def _database_env(spec: TelemetryPipelineSpec) -> Manifest:
    storage = spec.collector.storage
    if storage.secret_key_ref is not None:
        ref: KeyRef = storage.secret_key_ref
        return {"name": "FERRY_STORAGE",
                "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}
    return {"name": "FERRY_STORAGE", "value": storage.url or SQLITE_URL}


def _token_env(owner: Owner, spec: TelemetryPipelineSpec) -> Manifest:
    """The broker's token, from its Secret (the telemetry commands read FERRY_BROKER_TOKEN)."""
    ref = token_ref(queue_name(owner), spec.queue)
    return {"name": "FERRY_BROKER_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}


def _scratch_volumes() -> tuple[list[Manifest], list[Manifest]]:
    """Writable emptyDirs under a read-only root: data (SQLite default) and /tmp."""
    volumes = [{"name": "data", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]
    mounts = [{"name": "data", "mountPath": DATA_DIR}, {"name": "tmp", "mountPath": "/tmp"}]
    return volumes, mounts


def _pod(owner: Owner, spec: TelemetryPipelineSpec, defaults: PodDefaults, name: str,
         component: str, container: Manifest, volumes: list[Manifest],
         own: PodTemplate | None) -> Manifest:
    """The workload's pods: its own podTemplate laid over the pipeline's."""
    return pod(_meta(owner, name, component)["labels"], {},
               {"terminationGracePeriodSeconds": 30, "containers": [container],
                "volumes": volumes}, overlay(spec.pod_template, own), defaults)


def _source(spec: TelemetryPipelineSpec) -> tuple[str, list[Manifest], list[Manifest]]:
    """The CSV path the streamer reads, with the volume that brings it there."""
    source = spec.streamer.source
    if source.config_map is not None:
        cm = source.config_map
        volume = {"name": "source", "configMap": {"name": cm.name,
                                                 "items": [{"key": cm.key, "path": cm.key}]}}
        mount = {"name": "source", "mountPath": SOURCE_DIR, "readOnly": True}
        return f"{SOURCE_DIR}/{cm.key}", [volume], [mount]
    return source.path or "", [], []


def _streamer(owner: Owner, spec: TelemetryPipelineSpec, broker_url: str,
              defaults: PodDefaults) -> Manifest:
    name, streamer = streamer_name(owner), spec.streamer
    path, src_volumes, src_mounts = _source(spec)
    volumes, mounts = _scratch_volumes()
    args = ["--broker-url", broker_url, "--queue", queue_name(owner),
            "--instance-index", "$(FERRY_INSTANCE_INDEX)",
            "--instance-count", str(streamer.replicas)]
    if streamer.rate_per_second > 0:  # 0 means unlimited: the streamer's default
        args += ["--rate", str(streamer.rate_per_second)]
    if streamer.loop:
        args.append("--loop")
    # A pod that exits is restarted: a streamer that finished stays up (and resumes from
    # its checkpoint after a container restart instead of publishing everything again).
    args += ["--stay", "--checkpoint", f"{DATA_DIR}/streamer.checkpoint",
             "--http-port", str(METRICS_PORT)]
    container = {
        "name": "streamer",
        "image": streamer.image or spec.image or defaults.image,
        "command": ["ferry-streamer"],
        "args": [*args, path],
        "env": [{"name": "FERRY_INSTANCE_INDEX", "valueFrom": {"fieldRef": {
            "fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}}},
                _token_env(owner, spec)],
        "ports": [_metrics_port()],
        "resources": resources(streamer.resources),
        "securityContext": container_security(),
        "volumeMounts": [*mounts, *src_mounts],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(owner, name, "streamer"),
        "spec": {
            "serviceName": name,
            "replicas": streamer.replicas,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": selector_labels(owner, "streamer")},
            "template": _pod(owner, spec, defaults, name, "streamer", container,
                             [*volumes, *src_volumes], streamer.pod_template),
        },
    }


def _collector(owner: Owner, spec: TelemetryPipelineSpec, broker_url: str,
               defaults: PodDefaults) -> Manifest:
    name, collector = collector_name(owner), spec.collector
    volumes, mounts = _scratch_volumes()
    container = {
        "name": "collector",
        "image": collector.image or spec.image or defaults.image,
        "command": ["ferry-collector"],
        "args": ["--broker-url", broker_url, "--queue", queue_name(owner),
                 "--group", group_name(owner), "--metrics-port", str(METRICS_PORT)],
        "ports": [_metrics_port()],
        "env": [_database_env(spec), _token_env(owner, spec)],
        "resources": resources(collector.resources),
        "securityContext": container_security(),
        "volumeMounts": mounts,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(owner, name, "collector"),
        # No "replicas": the HorizontalPodAutoscaler owns it (server-side apply leaves it alone).
        "spec": {
            "selector": {"matchLabels": selector_labels(owner, "collector")},
            "template": _pod(owner, spec, defaults, name, "collector", container, volumes,
                             collector.pod_template),
        },
    }


def _api(owner: Owner, spec: TelemetryPipelineSpec, defaults: PodDefaults) -> Manifest:
    name = api_name(owner)
    volumes, mounts = _scratch_volumes()
    container = {
        "name": "api",
        "image": spec.api.image or spec.image or defaults.image,
        "command": ["ferry-api"],
        "args": ["--port", str(API_PORT)],
        "env": [_database_env(spec)],
        "ports": [{"name": "http", "containerPort": API_PORT}],
        "readinessProbe": http_probe("/healthz", 5),
        "livenessProbe": http_probe("/healthz", 10),
        "resources": resources(spec.api.resources),
        "securityContext": container_security(),
        "volumeMounts": mounts,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(owner, name, "api"),
        "spec": {
            "replicas": spec.api.replicas,
            "selector": {"matchLabels": selector_labels(owner, "api")},
            "template": _pod(owner, spec, defaults, name, "api", container, volumes,
                             spec.api.pod_template),
        },
    }


def _api_service(owner: Owner) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(owner, api_name(owner), "api"),
        "spec": {"selector": selector_labels(owner, "api"),
                 "ports": [{"name": "http", "port": API_PORT, "targetPort": "http"}]},
    }


def _degraded(obj: Mapping[str, Any]) -> bool:
    return holds((obj.get("status") or {}).get("conditions") or [], "Degraded", "Stalled")


def verdict(desired: Sequence[Manifest], observed: Mapping[str, Mapping[str, Any]],
            stuck: Mapping[str, str] | None = None) -> Verdict:
    """`observed` maps "Kind/name" to the live object (absent when it does not exist);
    `stuck` maps a workload's "Kind/name" to a pod of it that cannot start."""
    keys = [f"{m['kind']}/{m['metadata']['name']}" for m in desired]
    waiting = [k for k in keys if k not in observed or not is_ready(observed[k])]
    broken = [k for k in keys if k in observed and _degraded(observed[k])]
    broken += [f"{k} ({why})" for k, why in (stuck or {}).items() if k in waiting]
    ready = f"{len(keys) - len(waiting)}/{len(keys)} children ready"
    if broken:
        return Verdict(phase=Phase.DEGRADED, reason=Reason.CHILDREN_NOT_READY,
                       message=f"{ready}; degraded: {', '.join(broken)}")
    if waiting:
        why = ", ".join(_why(k, observed) for k in waiting)
        return Verdict(phase=Phase.PROGRESSING, reason=Reason.CHILDREN_NOT_READY,
                       message=f"{ready}; waiting for {why}")
    return Verdict(phase=Phase.READY, reason=Reason.RECONCILED, message=ready)


def _why(key: str, observed: Mapping[str, Mapping[str, Any]]) -> str:
    obj = observed.get(key)
    gap = rollout_gap(obj) if obj is not None and is_workload(obj) else None
    return f"{key} ({gap.split(': ', 1)[1]})" if gap else key


def status(
    *,
    owner: Owner,
    desired: Sequence[Manifest],
    observed: Mapping[str, Mapping[str, Any]],
    endpoint_url: str,
    previous: Sequence[Mapping[str, Any]],
    now: datetime,
    stuck: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    judged = verdict(desired, observed, stuck)
    ready = sum(1 for m in desired
                if (o := observed.get(f"{m['kind']}/{m['metadata']['name']}")) and is_ready(o))

    def _figure(key: str, field: str) -> int:
        return int(((observed.get(key) or {}).get("status") or {}).get(field) or 0)

    return {
        "observedGeneration": owner.generation,
        "conditions": conditions(judged, owner.generation, previous, now),
        "lag": _figure(f"ConsumerGroup/{group_name(owner)}", "lag"),
        "streamers": _figure(f"StatefulSet/{streamer_name(owner)}", "readyReplicas"),
        "collectors": _figure(f"Deployment/{collector_name(owner)}", "readyReplicas"),
        "readyChildren": f"{ready}/{len(desired)}",
        "queue": queue_name(owner),
        "endpoint": endpoint_url,
    }
