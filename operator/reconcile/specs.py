"""Typed views of the custom resources' specs, parsed from the objects the API server stored.

These models only give the data a shape. Validation and defaults live in crds/*.yaml (the
API server enforces them before an object is stored), so nothing here restates a rule.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

IntOrString = int | str


class Spec(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class DeletionPolicy(StrEnum):
    DELETE = "Delete"
    RETAIN = "Retain"


class StartAt(StrEnum):
    EARLIEST = "Earliest"
    LATEST = "Latest"


class Resources(Spec):
    requests: dict[str, IntOrString] = {}
    limits: dict[str, IntOrString] = {}


class Engine(StrEnum):
    EMBEDDED = "embedded"
    POSTGRES = "postgres"


class PostgresStorage(Spec):
    secret_ref: KeyRef
    schema_: str | None = Field(default=None, alias="schema")


class Storage(Spec):
    size: str
    storage_class_name: str | None = None
    delete_claim: bool = False
    engine: Engine = Engine.EMBEDDED
    postgres: PostgresStorage | None = None


class SecretKey(Spec):
    name: str
    key: str = "token"


class DisruptionBudget(StrEnum):
    MANAGED = "Managed"
    UNMANAGED = "Unmanaged"


class LocalRef(Spec):
    name: str


class PodMetadata(Spec):
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}


class PodSecurity(Spec):
    """IDs a pod runs with, only when asked for (restricted platforms assign their own)."""

    run_as_user: int | None = None
    run_as_group: int | None = None
    fs_group: int | None = None
    fs_group_change_policy: str | None = None
    supplemental_groups: list[int] = []


class PodOverrides(Spec):
    # Kubernetes' own types, already validated by the CRD schema: kept as the API server
    # stored them and passed through.
    node_selector: dict[str, str] = {}
    tolerations: list[dict[str, Any]] = []
    affinity: dict[str, Any] = {}
    topology_spread_constraints: list[dict[str, Any]] = []
    priority_class_name: str | None = None
    service_account_name: str | None = None
    image_pull_secrets: list[LocalRef] = []
    security_context: PodSecurity | None = None


class PodTemplate(Spec):
    """What a user lays over the pods Ferry creates (merged as workloads.pod documents)."""

    metadata: PodMetadata = PodMetadata()
    spec: PodOverrides = PodOverrides()


class Broker(Spec):
    url: str | None = None
    connection_secret: SecretKey | None = None
    image: str | None = None
    resources: Resources
    disruption_budget: DisruptionBudget = DisruptionBudget.MANAGED


class Overflow(StrEnum):
    REJECT_PUBLISH = "RejectPublish"
    DROP_OLDEST = "DropOldest"


class QueueSpec(Spec):
    retention: str
    max_message_bytes: int
    visibility_timeout: str
    max_deliveries: int
    dedup_window: str
    fair: bool
    max_depth: int | None = None
    overflow: Overflow = Overflow.REJECT_PUBLISH
    storage: Storage
    broker: Broker
    deletion_policy: DeletionPolicy
    pod_template: PodTemplate | None = None
    replicas: int = 1


class NackBackoff(Spec):
    initial: str
    multiplier: float
    max: str


class TargetRef(Spec):
    api_version: str
    kind: str
    name: str


class Provider(StrEnum):
    AUTO = "Auto"
    FERRY = "Ferry"
    KEDA = "KEDA"


class Autoscaling(Spec):
    provider: Provider
    polling_interval: str
    target: TargetRef
    min_replicas: int
    max_replicas: int
    lag_per_replica: int
    scale_up_stabilization: str
    scale_down_stabilization: str
    idle_after: str


class GroupFilter(Spec):
    match: dict[str, str] = {}
    prefix: dict[str, str] = {}


class ConsumerGroupSpec(Spec):
    queue: str
    start_at: StartAt
    visibility_timeout: str | None = None
    max_deliveries: int | None = None
    nack_backoff: NackBackoff
    filter: GroupFilter | None = None
    deletion_policy: DeletionPolicy
    autoscaling: Autoscaling | None = None


class KeyRef(Spec):
    name: str
    key: str


class Source(Spec):
    config_map: KeyRef | None = None
    path: str | None = None


class Streamer(Spec):
    replicas: int
    image: str | None = None
    source: Source
    rate_per_second: int
    loop: bool
    resources: Resources
    pod_template: PodTemplate | None = None


class CollectorStorage(Spec):
    url: str | None = None
    secret_key_ref: KeyRef | None = None


class Collector(Spec):
    image: str | None = None
    min_replicas: int
    max_replicas: int
    lag_per_replica: int
    storage: CollectorStorage
    resources: Resources
    pod_template: PodTemplate | None = None


class Api(Spec):
    enabled: bool
    image: str | None = None
    replicas: int
    resources: Resources = Resources()
    pod_template: PodTemplate | None = None


class TelemetryPipelineSpec(Spec):
    image: str | None = None
    pod_template: PodTemplate | None = None
    queue: QueueSpec
    streamer: Streamer
    collector: Collector
    api: Api


class Owner(Spec):
    """The identity of a custom resource, as children's owner references need it."""

    api_version: str
    kind: str
    name: str
    namespace: str
    uid: str
    generation: int = 0
