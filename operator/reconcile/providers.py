"""Which autoscaler serves a ConsumerGroup, and the ScalingActive condition that says why.

A cluster has one `v1beta1.external.metrics.k8s.io` APIService. Ferry's HPA path needs it
to be Ferry's own metrics API; when another server holds it (KEDA's metrics server,
prometheus-adapter, Datadog), Ferry never takes it over: a group falls back to KEDA when
KEDA is installed (provider Auto), otherwise its ScalingActive condition says why it
cannot scale. Pure: the handlers observe the cluster, this decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from ferry.operator.identity import KEDA_API_VERSION
from ferry.operator.reconcile.autoscaling import METRIC_NAME
from ferry.operator.reconcile.conditions import make_condition
from ferry.operator.reconcile.specs import Provider

APISERVICE = "v1beta1.external.metrics.k8s.io"  # the one a cluster can have
CONDITION = "ScalingActive"


class MetricsApi(StrEnum):
    """Who serves the cluster's external metrics API, as observed."""

    FERRY = "Ferry"          # its discovery lists ferry_consumergroup_lag
    OTHER = "Other"          # registered and answering, without Ferry's metric
    ABSENT = "Absent"        # no APIService at all
    UNKNOWN = "Unknown"      # registered, but could not be asked (unavailable)


class Observed(BaseModel):
    model_config = ConfigDict(frozen=True)

    metrics_api: MetricsApi
    served_by: str = ""      # "<namespace>/<service>" of the APIService, when registered
    keda_installed: bool = False


def observed(*, registered: bool, served_by: str, metric_names: frozenset[str] | None,
             keda_installed: bool) -> Observed:
    """Who serves external metrics, from the APIService and its discovery document
    (`metric_names` None: registered but not answering). Ferry's metrics API is known by
    what it serves, not by its Service's name, so any install layout is recognised."""
    if not registered:
        state = MetricsApi.ABSENT
    elif metric_names is None:
        state = MetricsApi.UNKNOWN
    else:
        state = MetricsApi.FERRY if METRIC_NAME in metric_names else MetricsApi.OTHER
    return Observed(metrics_api=state, served_by=served_by, keda_installed=keda_installed)


class ScalingReason(StrEnum):
    FERRY = "FerryMetricsApi"
    KEDA = "KEDA"
    KEDA_FALLBACK = "KEDAFallback"
    KEDA_MISSING = "KEDANotInstalled"
    METRICS_API_TAKEN = "MetricsApiTaken"
    METRICS_API_MISSING = "MetricsApiMissing"
    METRICS_API_UNKNOWN = "MetricsApiUnavailable"


class Choice(BaseModel):
    model_config = ConfigDict(frozen=True)

    provider: Provider | None   # FERRY or KEDA; None: nothing can scale the group
    active: bool | None         # the condition's status (None: Unknown)
    reason: ScalingReason
    message: str


def _ferry(seen: Observed) -> Choice:
    taken = (f"{APISERVICE} is served by {seen.served_by or 'another server'}, not by "
             "ferry-metrics-api, and Ferry never takes it over")
    if seen.metrics_api is MetricsApi.FERRY:
        return Choice(provider=Provider.FERRY, active=True, reason=ScalingReason.FERRY,
                      message=f"an HPA scales on ferry_consumergroup_lag from {APISERVICE}")
    if seen.metrics_api is MetricsApi.OTHER:
        return Choice(provider=Provider.FERRY, active=False,
                      reason=ScalingReason.METRICS_API_TAKEN,
                      message=f"{taken}; install KEDA and use provider Auto or KEDA")
    if seen.metrics_api is MetricsApi.ABSENT:
        return Choice(provider=Provider.FERRY, active=False,
                      reason=ScalingReason.METRICS_API_MISSING,
                      message=f"no {APISERVICE} is registered: install Ferry's metrics API "
                              "(manifests/components/metrics-api) or use provider KEDA")
    return Choice(provider=Provider.FERRY, active=None, reason=ScalingReason.METRICS_API_UNKNOWN,
                  message=f"{APISERVICE} ({seen.served_by or '?'}) is not answering")


def choose(requested: Provider, seen: Observed) -> Choice:
    """The provider for a group that asked for `requested`, given what the cluster has."""
    if requested is Provider.KEDA:
        if seen.keda_installed:
            return Choice(provider=Provider.KEDA, active=True, reason=ScalingReason.KEDA,
                          message="a KEDA ScaledObject scales on the group's backlog")
        return Choice(provider=None, active=False, reason=ScalingReason.KEDA_MISSING,
                      message="provider KEDA, but KEDA is not installed "
                              f"(the API server does not serve {KEDA_API_VERSION})")
    if (requested is Provider.AUTO and seen.metrics_api is MetricsApi.OTHER
            and seen.keda_installed):
        return Choice(provider=Provider.KEDA, active=True, reason=ScalingReason.KEDA_FALLBACK,
                      message=f"{APISERVICE} is served by {seen.served_by or 'another server'}; "
                              "a KEDA ScaledObject scales on the group's backlog instead")
    return _ferry(seen)


def condition(choice: Choice, generation: int, previous: Mapping[str, Any] | None,
              now: datetime) -> dict[str, Any]:
    """The ScalingActive condition, keeping lastTransitionTime while the status holds."""
    status = {True: "True", False: "False", None: "Unknown"}[choice.active]
    return make_condition(CONDITION, status, choice.reason.value, choice.message, generation,
                          previous, now)
