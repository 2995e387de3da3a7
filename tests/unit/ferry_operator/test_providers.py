"""Which autoscaler serves a group, and the KEDA ScaledObject it owns: pure decisions."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ferry.operator.reconcile import consumergroups, keda, providers
from ferry.operator.reconcile.providers import MetricsApi, Observed, ScalingReason
from ferry.operator.reconcile.specs import KeyRef, Provider

from .test_autoscaling import OWNER, group, spec

pytestmark = pytest.mark.unit
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
ENDPOINT = "http://orders-broker.shop.svc:7070"


def seen(metrics_api: MetricsApi, keda_installed: bool = False) -> Observed:
    return Observed(metrics_api=metrics_api, served_by="keda/keda-metrics-apiserver",
                    keda_installed=keda_installed)


# --- who serves external metrics ----------------------------------------------------------

@pytest.mark.parametrize(("registered", "names", "expected"), [
    (False, frozenset(), MetricsApi.ABSENT),
    (True, None, MetricsApi.UNKNOWN),
    (True, frozenset({"ferry_consumergroup_lag"}), MetricsApi.FERRY),
    (True, frozenset({"externalmetrics"}), MetricsApi.OTHER),
])
def test_ferrys_metrics_api_is_known_by_the_metric_it_serves(
        registered: bool, names: frozenset[str] | None, expected: MetricsApi) -> None:
    found = providers.observed(registered=registered, served_by="x/y", metric_names=names,
                               keda_installed=False)
    assert found.metrics_api is expected


# --- the choice -------------------------------------------------------------------------

def test_auto_uses_ferry_when_ferry_serves_external_metrics() -> None:
    choice = providers.choose(Provider.AUTO, seen(MetricsApi.FERRY, keda_installed=True))
    assert (choice.provider, choice.active, choice.reason) == (
        Provider.FERRY, True, ScalingReason.FERRY)


def test_auto_falls_back_to_keda_when_someone_else_holds_the_apiservice() -> None:
    choice = providers.choose(Provider.AUTO, seen(MetricsApi.OTHER, keda_installed=True))
    assert (choice.provider, choice.active, choice.reason) == (
        Provider.KEDA, True, ScalingReason.KEDA_FALLBACK)
    assert "keda/keda-metrics-apiserver" in choice.message


@pytest.mark.parametrize("requested", [Provider.AUTO, Provider.FERRY])
def test_a_taken_apiservice_without_keda_says_why_nothing_scales(requested: Provider) -> None:
    choice = providers.choose(requested, seen(MetricsApi.OTHER))
    assert (choice.active, choice.reason) == (False, ScalingReason.METRICS_API_TAKEN)
    assert "never takes it over" in choice.message
    assert "keda/keda-metrics-apiserver" in choice.message


def test_ferry_asked_for_explicitly_never_switches_to_keda() -> None:
    choice = providers.choose(Provider.FERRY, seen(MetricsApi.OTHER, keda_installed=True))
    assert (choice.provider, choice.reason) == (Provider.FERRY, ScalingReason.METRICS_API_TAKEN)


def test_no_apiservice_at_all_points_at_the_component() -> None:
    choice = providers.choose(Provider.FERRY, seen(MetricsApi.ABSENT))
    assert choice.reason is ScalingReason.METRICS_API_MISSING
    assert "manifests/components/metrics-api" in choice.message


def test_keda_requested_without_keda_installed_scales_nothing() -> None:
    choice = providers.choose(Provider.KEDA, seen(MetricsApi.FERRY))
    assert (choice.provider, choice.active, choice.reason) == (
        None, False, ScalingReason.KEDA_MISSING)
    assert consumergroups.children(OWNER, group(provider="KEDA"), provider=choice.provider,
                                   endpoint=ENDPOINT) == []


def test_scaling_active_keeps_its_transition_time_while_the_status_holds() -> None:
    choice = providers.choose(Provider.FERRY, seen(MetricsApi.FERRY))
    first = providers.condition(choice, 3, None, NOW)
    later = providers.condition(choice, 4, first, NOW + timedelta(minutes=5))
    assert later["lastTransitionTime"] == first["lastTransitionTime"]
    assert (later["type"], later["status"], later["observedGeneration"]) == (
        "ScalingActive", "True", 4)
    broken = providers.condition(providers.choose(Provider.FERRY, seen(MetricsApi.OTHER)), 4,
                                 later, NOW + timedelta(minutes=6))
    assert broken["status"] == "False"
    assert broken["lastTransitionTime"] != first["lastTransitionTime"]


def test_status_carries_scaling_active_beside_the_other_conditions() -> None:
    choice = providers.choose(Provider.KEDA, seen(MetricsApi.OTHER, keda_installed=True))
    plain = consumergroups.status(owner=OWNER, spec=group(provider="KEDA"),
                                  endpoint_url=ENDPOINT, stats=None, failure=None,
                                  previous=[], now=NOW)
    status = consumergroups.status(owner=OWNER, spec=group(provider="KEDA"),
                                   endpoint_url=ENDPOINT, stats=None, failure=None,
                                   previous=[], now=NOW, scaling=choice)
    assert status["conditions"][:-1] == plain["conditions"]
    assert status["conditions"][-1]["type"] == "ScalingActive"


# --- the ScaledObject ---------------------------------------------------------------------

def scaled_object(**autoscaling: Any) -> dict[str, Any]:
    kids = consumergroups.children(OWNER, group(provider="KEDA", **autoscaling),
                                   provider=Provider.KEDA, endpoint=ENDPOINT)
    assert [k["kind"] for k in kids] == ["ScaledObject"]
    return kids[0]


def test_the_scaled_object_is_owned_by_the_group_and_targets_its_workload() -> None:
    so = scaled_object()
    assert so["apiVersion"] == "keda.sh/v1alpha1"
    assert so["metadata"]["ownerReferences"][0]["uid"] == OWNER.uid
    assert so["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                            "name": "workers"}


def test_keda_reads_the_same_backlog_the_hpa_scales_on() -> None:
    trigger = scaled_object(lagPerReplica=25)["spec"]["triggers"][0]
    assert trigger["type"] == "metrics-api"
    assert trigger["metricType"] == "AverageValue"
    assert trigger["metadata"] == {
        "url": f"{ENDPOINT}/v1/queues/orders/groups/billing", "format": "json",
        "valueLocation": "backlog", "targetValue": "25", "activationTargetValue": "0"}


def test_the_group_spec_maps_onto_keda_fields() -> None:
    so = scaled_object(minReplicas=0, maxReplicas=7, idleAfter="90s", pollingInterval="2s",
                       scaleUpStabilization="1500ms", scaleDownStabilization="1m")["spec"]
    assert (so["minReplicaCount"], so["maxReplicaCount"]) == (0, 7)
    assert (so["cooldownPeriod"], so["pollingInterval"]) == (90, 2)
    hpa = so["advanced"]["horizontalPodAutoscalerConfig"]
    assert hpa["name"] == keda.hpa_name(OWNER) == "keda-hpa-billing"
    assert hpa["behavior"] == {"scaleUp": {"stabilizationWindowSeconds": 2},
                               "scaleDown": {"stabilizationWindowSeconds": 60}}


def test_no_scaled_object_until_the_broker_is_known() -> None:
    assert consumergroups.children(OWNER, group(provider="KEDA"), provider=Provider.KEDA,
                                   endpoint=None) == []


def test_provider_ferry_still_owns_an_hpa() -> None:
    kids = consumergroups.children(OWNER, group(), provider=Provider.FERRY, endpoint=ENDPOINT)
    assert [k["kind"] for k in kids] == ["HorizontalPodAutoscaler"]
    assert spec().provider is Provider.AUTO


def test_keda_authenticates_with_the_brokers_token() -> None:
    token = KeyRef(name="orders-broker-token", key="token")
    auth, scaled = consumergroups.children(OWNER, group(provider="KEDA"), provider=Provider.KEDA,
                                           endpoint=ENDPOINT, token=token)
    assert auth["kind"] == keda.AUTH_KIND and auth["spec"]["secretTargetRef"] == [
        {"parameter": "token", "name": "orders-broker-token", "key": "token"}]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["metadata"]["authMode"] == "bearer"
    assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}
