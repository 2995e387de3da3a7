"""Queue -> broker StatefulSet, Services, ConfigMap, PodDisruptionBudget; settings; status."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from ferry.broker.models import Overflow as BrokerOverflow
from ferry.broker.models import QueueSettings, QueueStats
from ferry.operator.reconcile import durations
from ferry.operator.reconcile.conditions import (
    Phase,
    Reason,
    Verdict,
    broker_trouble,
    conditions,
)
from ferry.operator.reconcile.metadata import QUEUE, Manifest, child_metadata, selector_labels
from ferry.operator.reconcile.observations import Failure, Problem
from ferry.operator.reconcile.specs import DisruptionBudget, Engine, Overflow, Owner, QueueSpec
from ferry.operator.reconcile.tenancy import TOKEN_KEY, token_ref, token_secret_name
from ferry.operator.reconcile.workloads import (
    PodDefaults,
    container_security,
    http_probe,
    pod,
    resources,
)

BROKER_PORT = 7070
STARTUP_SECONDS = 120  # a broker listens before it reads its store in, so this is generous
DATA_DIR = "/var/lib/ferry"
TOKEN_DIR = "/etc/ferry/token"
COMPONENT = "broker"
CONFIG_HASH = "ferry.dev/config-hash"
HOSTNAME = "kubernetes.io/hostname"
ZONE = "topology.kubernetes.io/zone"


def broker_name(queue: str) -> str:
    return f"{queue}-broker"


def manages_broker(spec: QueueSpec) -> bool:
    """Without broker.url Ferry runs the queue's broker itself."""
    return spec.broker.url is None


def served_elsewhere(spec: QueueSpec, override: str | None) -> bool:
    """A managed broker's queue is served by the operator's override broker (a control plane
    whose pods never run): its StatefulSet's pods are not what serves it, so their rollout
    is not awaited."""
    return manages_broker(spec) and bool(override)


def in_cluster_endpoint(namespace: str, queue: str, spec: QueueSpec) -> str:
    """The URL pods use: broker.url, or the client Service Ferry creates."""
    if spec.broker.url is not None:
        return spec.broker.url.rstrip("/")
    return f"http://{broker_name(queue)}.{namespace}.svc:{BROKER_PORT}"


def endpoint(namespace: str, queue: str, spec: QueueSpec, override: str | None) -> str:
    """The URL the operator talks to: broker.url first, then the operator's override.

    The override exists for control planes whose pods never run (envtest, `make demo`):
    the broker Ferry would have started runs as a local process instead.
    """
    if spec.broker.url is None and override:
        return override.rstrip("/")
    return in_cluster_endpoint(namespace, queue, spec)


def broker_settings(spec: QueueSpec) -> QueueSettings:
    return QueueSettings(
        max_message_bytes=spec.max_message_bytes,
        retention_ms=durations.to_ms(spec.retention),
        visibility_timeout_ms=durations.to_ms(spec.visibility_timeout),
        max_deliveries=spec.max_deliveries,
        dedup_window_ms=durations.to_ms(spec.dedup_window),
        fair=spec.fair,
        max_depth=spec.max_depth,
        overflow=(BrokerOverflow.DROP_OLDEST if spec.overflow is Overflow.DROP_OLDEST
                  else BrokerOverflow.REJECT_PUBLISH),
    )


def children(owner: Owner, spec: QueueSpec, defaults: PodDefaults) -> list[Manifest]:
    """The broker workload for `owner`, or nothing when the queue lives on an existing broker."""
    if not manages_broker(spec):
        return []
    config = _config_map(owner, spec)
    out = [config, _headless_service(owner), _client_service(owner),
           _stateful_set(owner, spec, config["data"], defaults)]
    if manages_budget(spec):
        out.append(_disruption_budget(owner))
    return out


def manages_budget(spec: QueueSpec) -> bool:
    """Unmanaged: the budget is the cluster admins' (Ferry neither applies nor prunes it)."""
    return spec.broker.disruption_budget is DisruptionBudget.MANAGED


def _meta(owner: Owner, name: str) -> Manifest:
    return child_metadata(owner, name, COMPONENT, **{QUEUE: owner.name})


def token_secret(owner: Owner, token: str) -> Manifest:
    """The Secret holding a managed broker's token: created once (never applied, so a
    pass cannot replace the token the broker and its clients hold)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(owner, token_secret_name(owner.name)),
        "type": "Opaque",
        "stringData": {TOKEN_KEY: token},
    }


def on_postgres(spec: QueueSpec) -> bool:
    return spec.storage.engine is Engine.POSTGRES


def postgres_schema(owner: Owner, spec: QueueSpec) -> str:
    """The queue set (PostgreSQL schema) of a postgres Queue: storage.postgres.schema, else
    one per namespace and name, so Queues of several namespaces may share a database."""
    if spec.storage.postgres is not None and spec.storage.postgres.schema_:
        return spec.storage.postgres.schema_
    digest = hashlib.sha256(f"{owner.namespace}/{owner.name}".encode()).hexdigest()[:8]
    return f"ferry_{owner.name.replace('-', '_')[:45]}_{digest}"


def _config_map(owner: Owner, spec: QueueSpec) -> Manifest:
    settings = broker_settings(spec).model_dump(mode="json")
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(owner, broker_name(owner.name)),
        # A record of the settings the operator applies through the broker's API (and, by
        # its hash, what rolls the pods): the broker reads its configuration from its flags.
        "data": {
            "queue.json": json.dumps({"queue": owner.name, "settings": settings}, sort_keys=True),
        },
    }


def _headless_service(owner: Owner) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(owner, f"{broker_name(owner.name)}-headless"),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": selector_labels(owner, COMPONENT),
            "ports": [{"name": "http", "port": BROKER_PORT, "targetPort": "http"}],
        },
    }


def _client_service(owner: Owner) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(owner, broker_name(owner.name)),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(owner, COMPONENT),
            "ports": [{"name": "http", "port": BROKER_PORT, "targetPort": "http"}],
        },
    }


def _stateful_set(owner: Owner, spec: QueueSpec, config: Mapping[str, str],
                  defaults: PodDefaults) -> Manifest:
    """The broker StatefulSet: one pod on its own volume, or (postgres) `replicas` pods on
    one database, one leading.

    A postgres Queue's brokers have no data volume: the data is the database's. The URI
    comes from the user's Secret, the pod's name becomes the leader's name (status.leader).
    Pods are spread across nodes and zones where the cluster allows (preferred, so a
    one-node cluster still runs them; a podTemplate affinity can require it). Parallel: a
    standby is never Ready, so ordered pod management would keep the pods after it from
    ever starting. OnDelete when replicated: a rolling update waits for each new pod to be
    Ready, which a standby never is, so the operator rolls the pods itself (rolling.py).
    """
    name = broker_name(owner.name)
    digest = hashlib.sha256(json.dumps(dict(config), sort_keys=True).encode()).hexdigest()[:16]
    replicated = on_postgres(spec)
    selector = {"matchLabels": selector_labels(owner, COMPONENT)}
    mounts = [{"name": "token", "mountPath": TOKEN_DIR, "readOnly": True}]
    if not replicated:
        mounts.insert(0, {"name": "data", "mountPath": DATA_DIR})
    container: Manifest = {
        "name": "broker",
        "image": spec.broker.image or defaults.image,
        "command": ["ferry-broker"],
        # Flags, not env: the engine's store and, with postgres, the queue set (schema).
        "args": (["--postgres-schema", postgres_schema(owner, spec)] if replicated
                 else ["--data-dir", DATA_DIR]) + [
            "--port", str(BROKER_PORT), "--token-file", TOKEN_DIR],
        "ports": [{"name": "http", "containerPort": BROKER_PORT}],
        # The kubelet marks the container started once /healthz answered: a standby is
        # never Ready, so started is what says a rolled pod is back (rolling.py). Up to
        # STARTUP_SECONDS, before liveness checks begin.
        "startupProbe": {**http_probe("/healthz", 2),
                         "failureThreshold": STARTUP_SECONDS // 2},
        "readinessProbe": http_probe("/readyz", 5),
        "livenessProbe": http_probe("/healthz", 10),
        "resources": resources(spec.broker.resources),
        "securityContext": container_security(),
        "volumeMounts": mounts,
    }
    # The whole Secret, a file per key, read as one token file: `token` (the operator's
    # own, admin) and any key a user adds, e.g. `tokens` with scoped lines (docs/broker.md).
    volumes = [{"name": "token", "secret": {"secretName": token_secret_name(owner.name)}}]
    pod_spec: Manifest = {"terminationGracePeriodSeconds": 30, "containers": [container],
                          "volumes": volumes}
    set_spec: Manifest = {"serviceName": f"{name}-headless", "selector": selector}
    if replicated:
        assert spec.storage.postgres is not None  # the CRD requires it with engine postgres
        ref = spec.storage.postgres.secret_ref
        container["env"] = [
            {"name": "FERRY_POSTGRES",
             "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ]
        if spec.replicas > 1:
            apart = {"topologyKey": HOSTNAME, "labelSelector": selector}
            pod_spec["affinity"] = {"podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 100, "podAffinityTerm": apart},
                ]}}
            pod_spec["topologySpreadConstraints"] = [
                {"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway",
                 "labelSelector": selector}
                for key in (HOSTNAME, ZONE)
            ]
        set_spec.update({
            "replicas": spec.replicas,
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "OnDelete" if spec.replicas > 1 else "RollingUpdate"},
        })
    else:
        claim: Manifest = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": spec.storage.size}},
        }
        if spec.storage.storage_class_name:
            claim["storageClassName"] = spec.storage.storage_class_name
        # The volume outlives its Queue unless the user asks (Strimzi's deleteClaim, default
        # false): a Queue pruned by a GitOps tool or deleted by mistake loses no data.
        set_spec.update({
            "replicas": 1,
            "persistentVolumeClaimRetentionPolicy": {
                "whenDeleted": "Delete" if spec.storage.delete_claim else "Retain",
                "whenScaled": "Retain"},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": claim}],
        })
    set_spec["template"] = pod(_meta(owner, name)["labels"], {CONFIG_HASH: digest}, pod_spec,
                               spec.pod_template, defaults)
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": _meta(owner, name),
            "spec": set_spec}


def ready_wanted(spec: QueueSpec) -> int | None:
    """Ready broker pods a rolled-out Queue has: all of them, or the one leader."""
    return 1 if on_postgres(spec) else None


def leader_of(pods: Sequence[Mapping[str, Any]]) -> tuple[str, str | None] | None:
    """The leading broker pod of a postgres Queue and since when: the one that is Ready
    (standbys never are). No side effects."""
    for p in pods:
        for c in (p.get("status") or {}).get("conditions") or []:
            if c.get("type") == "Ready" and c.get("status") == "True":
                return p["metadata"]["name"], c.get("lastTransitionTime")
    return None


def _disruption_budget(owner: Owner) -> Manifest:
    # maxUnavailable 1, never minAvailable 1: with one broker pod the latter blocks every
    # node drain and cluster upgrade forever. An eviction is a graceful stop (the broker
    # drains, its data stays on the volume) and the pod comes back on another node; the
    # budget still keeps a drain from taking two of a queue's pods at once.
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(owner, broker_name(owner.name)),
        "spec": {"maxUnavailable": 1,
                 "selector": {"matchLabels": selector_labels(owner, COMPONENT)}},
    }


def verdict(spec: QueueSpec, ready_replicas: int, stats: QueueStats | None,
            failure: Failure | None, endpoint_url: str, *, rollout: str | None = None,
            stuck: str | None = None, storage: str | None = None) -> Verdict:
    """`rollout`: what the broker StatefulSet still lacks to have rolled out this spec
    (readiness.rollout_gap); `stuck`: a broker pod that cannot start (readiness.stuck);
    `storage`: why the volume cannot grow as asked (the queue still works: Degraded)."""
    if stuck is not None:
        return Verdict(phase=Phase.DEGRADED, reason=Reason.PODS_FAILING,
                       message=f"the broker cannot start: {stuck}")
    if storage is not None:
        return Verdict(phase=Phase.DEGRADED, reason=Reason.STORAGE_NOT_EXPANDABLE,
                       message=storage)
    if stats is not None:
        if rollout is not None:
            return Verdict(phase=Phase.PROGRESSING, reason=Reason.ROLLING_OUT, message=rollout)
        return Verdict(phase=Phase.READY, reason=Reason.RECONCILED,
                       message=f"queue {stats.queue} is served by {endpoint_url}")
    if failure is None or failure.problem is Problem.MISSING:
        return Verdict(phase=Phase.PROGRESSING, reason=Reason.BROKER_STARTING,
                       message=f"creating the queue on {endpoint_url}")
    starting = rollout is not None or ready_replicas < 1
    if failure.problem is Problem.UNREACHABLE and manages_broker(spec) and starting:
        return Verdict(phase=Phase.PROGRESSING, reason=Reason.BROKER_STARTING,
                       message=f"waiting for the broker at {endpoint_url}: {failure.message}")
    return broker_trouble(failure)


def figures(stats: QueueStats) -> dict[str, int]:
    groups = stats.groups
    return {
        "depth": stats.messages,
        "inFlight": sum(g.in_flight for g in groups),
        "dead": sum(g.dead for g in groups),
        "consumers": sum(len(g.consumers) for g in groups),
        "groups": len(groups),
        "publishedTotal": stats.published_total,
    }


def status(
    *,
    owner: Owner,
    spec: QueueSpec,
    endpoint_url: str,
    ready_replicas: int,
    stats: QueueStats | None,
    failure: Failure | None,
    previous: Sequence[Mapping[str, Any]],
    now: datetime,
    rollout: str | None = None,
    stuck: str | None = None,
    storage: str | None = None,
    leader: tuple[str, str | None] | None = None,
) -> dict[str, Any]:
    """The whole status to write; figures are left out (kept as they were) without stats.
    `leader`: the leading broker pod and since when (leader_of), for a postgres Queue."""
    judged = verdict(spec, ready_replicas, stats, failure, endpoint_url, rollout=rollout,
                     stuck=stuck, storage=storage)
    out: dict[str, Any] = {
        "observedGeneration": owner.generation,
        "conditions": conditions(judged, owner.generation, previous, now),
        "readyReplicas": ready_replicas,
        "endpoint": endpoint_url,
        "tokenSecret": token_ref(owner.name, spec).model_dump(),
    }
    if manages_broker(spec):
        out["engine"] = spec.storage.engine.value
    if on_postgres(spec) and manages_broker(spec):
        out["leader"] = leader[0] if leader is not None else ""
        out["leaderSince"] = leader[1] if leader is not None else None
    if stats is not None:
        out.update(figures(stats))
    return out
