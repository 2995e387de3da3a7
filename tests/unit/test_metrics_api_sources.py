"""Where the metrics API's groups and front-proxy settings come from (pure parts)."""

import pytest

from ferry.broker.models import GroupSettings, GroupStats
from ferry.operator.metricsapi.frontproxy import RequestHeaderConfig
from ferry.operator.metricsapi.lags import (
    GroupRef,
    LagReader,
    LagUnavailableError,
    StaticDirectory,
    StatsCache,
    found_groups,
)
from ferry.operator.metricsapi.ownership import Holder, Seen, seen
from ferry.operator.metricsapi.selectors import Selector

pytestmark = pytest.mark.unit


def test_only_groups_whose_broker_is_known_are_served() -> None:
    items = [
        {"metadata": {"name": "billing"}, "spec": {"queue": "orders"},
         "status": {"endpoint": "http://orders-broker.shop.svc:8080"}},
        {"metadata": {"name": "fresh"}, "spec": {"queue": "orders"}},  # not reconciled yet
        {"metadata": {"name": "audit"}, "spec": {"queue": "orders"}, "status": {}},
    ]
    assert [ref for ref, _ in found_groups("shop", items)] == [
        GroupRef("shop", "orders", "billing", "http://orders-broker.shop.svc:8080")]


async def test_static_groups_parse_and_refuse_a_malformed_flag() -> None:
    directory = StaticDirectory.parse(["shop/orders/billing=http://127.0.0.1:8080"])
    assert await directory.groups("shop") == [
        GroupRef("shop", "orders", "billing", "http://127.0.0.1:8080")]
    assert await directory.groups("other") == []
    for bad in ("shop/orders=http://x", "shop/orders/billing", "shop//billing=http://x"):
        with pytest.raises(ValueError, match="NAMESPACE/QUEUE/GROUP=BROKER_URL"):
            StaticDirectory.parse([bad])


def test_requestheader_settings_come_from_the_api_servers_configmap() -> None:
    config = RequestHeaderConfig.from_configmap({
        "requestheader-client-ca-file": "-----BEGIN CERTIFICATE-----...",
        "requestheader-allowed-names": '["front-proxy-client"]',
        "requestheader-username-headers": '["X-Remote-User"]',
        "requestheader-group-headers": '["X-Remote-Group"]',
        "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]',
    })
    assert config.allowed_names == ("front-proxy-client",)
    assert config.group_headers == ("X-Remote-Group",)


def test_a_cluster_without_the_aggregation_layer_is_named_as_the_cause() -> None:
    with pytest.raises(ValueError, match="is the aggregation layer enabled"):
        RequestHeaderConfig.from_configmap({"client-ca-file": "..."})


def test_who_holds_the_apiservice_is_read_from_its_service_reference() -> None:
    ours = {"spec": {"service": {"namespace": "ferry-system", "name": "ferry-metrics-api"}}}
    keda = {"spec": {"service": {"namespace": "keda", "name": "keda-operator-metrics"}}}
    assert seen(ours, "ferry-system", "ferry-metrics-api") == Seen(Holder.OURS,
                                                                   "ferry-system/ferry-metrics-api")
    taken = seen(keda, "ferry-system", "ferry-metrics-api")
    assert (taken.holder, taken.problem) == (Holder.TAKEN, "apiservice_taken")
    assert "served by keda/keda-operator-metrics, not by this server" in taken.message
    assert seen({"spec": {}}, "ferry-system", "ferry-metrics-api") == Seen(Holder.TAKEN, "local")
    assert seen(None, "ferry-system", "ferry-metrics-api").problem == "apiservice_absent"
    assert Seen(Holder.UNKNOWN).problem is None  # not known: no claim either way


class _Restarting:
    """A broker's stats as a restart reads its backlog back: partial, then whole."""

    def __init__(self) -> None:
        self.restoring = True

    async def group_stats(self, queue: str, group: str) -> GroupStats:
        depth = 40 if self.restoring else 90_000
        return GroupStats(queue=queue, group=group, settings=GroupSettings(), depth=depth,
                          in_flight=0, delayed=0, dead=0, lag=depth, backlog=depth,
                          oldest_ready_age_ms=0, acked_total=0, consumers=[],
                          restoring=self.restoring)

    async def close(self) -> None:
        pass


async def test_a_broker_still_restoring_is_no_lag_rather_than_a_low_one() -> None:
    broker = _Restarting()
    directory = StaticDirectory.parse(["shop/orders/billing=http://127.0.0.1:8080"])
    lags = LagReader(directory, StatsCache(lambda url, token: broker, ttl=0))
    with pytest.raises(LagUnavailableError, match="still reading its stored messages"):
        await lags.samples("shop", Selector())
    broker.restoring = False
    assert [value for _, value in await lags.samples("shop", Selector())] == [90_000]
