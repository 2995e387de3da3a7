"""The operator's own settings, from flags and FERRY_* environment variables."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class OperatorSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    namespaces: list[str] = Field(default_factory=list, description="empty: cluster-wide")
    peering: str | None = Field("ferry", description="kopf peering name; None: standalone")
    peering_required: bool = Field(
        False, description="wait for kopf's peering CRDs instead of running standalone "
        "when they are not installed")
    priority: int = Field(
        0, description="peering priority: the highest acts, the others wait as hot standbys")
    broker_url: str | None = Field(
        None, description="talk to this broker for Queues without spec.broker.url "
        "(control planes whose pods never run: envtest, make demo)")
    external_broker_namespaces: frozenset[str] = Field(
        frozenset(), description="namespaces whose Queues may use broker.url ('*': all)")
    kubeconfig: str | None = None
    image: str | None = Field(
        None, min_length=1, description="image of brokers and pipelines that set none; "
        "None: the operator's own (its pod's container, else its release)")
    pod: tuple[str, str] | None = Field(
        None, description="namespace and name of the operator's own pod (downward API)")
    image_pull_secrets: tuple[str, ...] = Field(
        (), description="pull secrets every pod Ferry creates lists (in its own namespace)")
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 8081
    resync_seconds: float = Field(30.0, gt=0, description="re-apply children (drift repair)")
    stats_seconds: float = Field(10.0, gt=0, description="poll broker stats into status")
    delete_attempts: int = Field(5, ge=1, description="broker delete attempts before release")
    retry_base_seconds: float = Field(2.0, gt=0)
    retry_cap_seconds: float = Field(60.0, gt=0)
