"""The External Metrics API server over real TLS: discovery, front-proxy authentication,
errors as Kubernetes Status documents."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from fixtures.broker_process import BrokerProcess
from fixtures.brokers import GUARDED_TOKEN

from ferry.broker.client import BrokerClient, BrokerError
from ferry.broker.models import OutgoingMessage
from ferry.kit.serving import listening
from ferry.operator.metricsapi import certificates, frontproxy
from ferry.operator.metricsapi.access import AllowAuthenticated
from ferry.operator.metricsapi.lags import (
    GroupRef,
    LagReader,
    StaticDirectory,
    StatsCache,
    StatsClient,
)
from ferry.operator.metricsapi.routes import make_app

pytestmark = pytest.mark.functional

BASE = "/apis/external.metrics.k8s.io/v1beta1"


@dataclass
class Pki:
    serving_ca: Path
    proxy_client: tuple[Path, Path]
    stranger: tuple[Path, Path]
    wrong_name: tuple[Path, Path]
    server: tuple[Path, Path]
    requestheader: frontproxy.RequestHeaderConfig


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    serving_ca = certificates.make_ca("serving-ca")
    proxy_ca = certificates.make_ca("front-proxy-ca")
    other_ca = certificates.make_ca("someone-else")
    server = certificates.issue(serving_ca, "ferry-metrics-api",
                                hosts=certificates.serving_hosts("ferry-metrics-api", "ferry"))
    return Pki(
        serving_ca=serving_ca.write(d, "serving-ca")[0],
        proxy_client=certificates.issue(proxy_ca, "front-proxy-client", client=True).write(
            d, "proxy-client"),
        stranger=certificates.issue(other_ca, "front-proxy-client", client=True).write(
            d, "stranger"),
        wrong_name=certificates.issue(proxy_ca, "mallory", client=True).write(d, "mallory"),
        server=server.write(d, "server"),
        requestheader=frontproxy.RequestHeaderConfig.from_configmap({
            "requestheader-client-ca-file": proxy_ca.cert_pem.decode(),
            "requestheader-allowed-names": '["front-proxy-client"]',
            "requestheader-username-headers": '["X-Remote-User"]',
            "requestheader-group-headers": '["X-Remote-Group"]',
            "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]',
        }),
    )


def _no_broker(url: str, token: str | None) -> StatsClient:
    raise AssertionError(f"no broker expected in this test, asked for {url}")


@asynccontextmanager
async def serving(pki: Pki, directory: StaticDirectory, cache: StatsCache) -> AsyncIterator[str]:
    app = make_app(LagReader(directory, cache, errors=(BrokerError,)), cache, pki.requestheader,
                   AllowAuthenticated())
    context = frontproxy.server_context(str(pki.server[0]), str(pki.server[1]), pki.requestheader)
    async with listening(app, "127.0.0.1", 0, ssl_context=context) as port:
        yield f"https://127.0.0.1:{port}"


@pytest.fixture
async def server(pki: Pki) -> AsyncIterator[str]:
    async with serving(pki, StaticDirectory([]), StatsCache(_no_broker)) as url:
        yield url


def _context(pki: Pki, cert: tuple[Path, Path] | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.serving_ca))
    if cert:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    return context


async def _get(url: str, context: ssl.SSLContext, user: str | None = "system:hpa",
               **params: str) -> tuple[int, Any]:
    headers = {"X-Remote-User": user, "X-Remote-Group": "system:authenticated"} if user else {}
    async with aiohttp.ClientSession() as session, session.get(
            url, ssl=context, headers=headers, params=params) as response:
        return response.status, await response.json(content_type=None)


async def test_discovery_names_the_group_version_and_the_lag_metric(server: str, pki: Pki) -> None:
    proxy = _context(pki, pki.proxy_client)
    status, groups = await _get(server + "/apis", proxy)
    assert status == 200
    assert groups["groups"][0]["preferredVersion"]["groupVersion"] == (
        "external.metrics.k8s.io/v1beta1")
    status, group = await _get(server + "/apis/external.metrics.k8s.io", proxy)
    assert (status, group["kind"], group["name"]) == (200, "APIGroup", "external.metrics.k8s.io")
    status, resources = await _get(server + BASE, proxy)
    assert status == 200
    assert resources["kind"] == "APIResourceList"
    assert [(r["name"], r["namespaced"], r["verbs"]) for r in resources["resources"]] == [
        ("ferry_consumergroup_lag", True, ["get"])]


async def test_a_namespace_without_groups_has_an_empty_list(server: str, pki: Pki) -> None:
    status, body = await _get(server + BASE + "/namespaces/shop/ferry_consumergroup_lag",
                              _context(pki, pki.proxy_client), labelSelector="queue=orders")
    assert status == 200
    assert body == {"kind": "ExternalMetricValueList",
                    "apiVersion": "external.metrics.k8s.io/v1beta1", "metadata": {}, "items": []}


async def test_without_a_client_certificate_the_api_is_refused(server: str, pki: Pki) -> None:
    status, body = await _get(server + BASE, _context(pki, None))
    assert status == 401
    assert (body["kind"], body["reason"], body["code"]) == ("Status", "Unauthorized", 401)
    assert "no client certificate" in body["message"]


async def test_a_certificate_from_another_ca_fails_the_handshake(server: str, pki: Pki) -> None:
    with pytest.raises(aiohttp.ClientError):
        await _get(server + BASE, _context(pki, pki.stranger))


async def test_a_front_proxy_name_not_allowed_is_refused(server: str, pki: Pki) -> None:
    status, body = await _get(server + BASE, _context(pki, pki.wrong_name))
    assert status == 401
    assert "'mallory'" in body["message"]


async def test_the_front_proxy_must_name_the_user(server: str, pki: Pki) -> None:
    status, body = await _get(server + BASE, _context(pki, pki.proxy_client), user=None)
    assert status == 401
    assert "X-Remote-User" in body["message"]


async def test_probes_answer_without_a_certificate(server: str, pki: Pki) -> None:
    async with aiohttp.ClientSession() as session, session.get(
            server + "/readyz", ssl=_context(pki, None)) as response:
        assert (response.status, await response.json()) == (200, {"status": "ok"})


async def test_unknown_metric_is_a_not_found_status(server: str, pki: Pki) -> None:
    status, body = await _get(server + BASE + "/namespaces/shop/cpu_usage",
                              _context(pki, pki.proxy_client))
    assert status == 404
    assert (body["reason"], body["code"]) == ("NotFound", 404)
    assert "ferry_consumergroup_lag" in body["message"]


async def test_a_bad_label_selector_is_a_bad_request(server: str, pki: Pki) -> None:
    status, body = await _get(server + BASE + "/namespaces/shop/ferry_consumergroup_lag",
                              _context(pki, pki.proxy_client), labelSelector="queue in (a")
    assert status == 400
    assert body["reason"] == "BadRequest"
    assert "unbalanced parentheses" in body["message"]


async def test_prometheus_metrics_count_answers_by_status(server: str, pki: Pki) -> None:
    await _get(server + BASE, _context(pki, None))
    async with aiohttp.ClientSession() as session, session.get(
            server + "/metrics", ssl=_context(pki, None)) as response:
        text = await response.text()
    assert 'ferry_metrics_api_requests_total{code="401"} 1.0' in text



# --- values from a real broker -------------------------------------------------------------

LAG = BASE + "/namespaces/shop/ferry_consumergroup_lag"


def _brokers(url: str, token: str | None) -> StatsClient:
    return BrokerClient(url, token=token, retries=1, websocket=False)


@pytest.fixture
async def admin(broker: BrokerProcess) -> AsyncIterator[BrokerClient]:
    async with BrokerClient(broker.url) as client:
        await client.put_queue("orders")
        await client.put_group("orders", "billing")
        await client.put_group("orders", "audit")
        yield client


def _directory(broker: BrokerProcess) -> StaticDirectory:
    return StaticDirectory([GroupRef("shop", "orders", "billing", broker.url),
                            GroupRef("shop", "orders", "audit", broker.url)])


def _values(body: Any) -> dict[str, str]:
    return {item["metricLabels"]["group"]: item["value"] for item in body["items"]}


async def test_values_are_ready_plus_in_flight_per_group(
        pki: Pki, broker: BrokerProcess, admin: BrokerClient) -> None:
    await admin.publish("orders", [OutgoingMessage(body=n) for n in range(5)])
    # Delayed messages wait for the clock, not for consumers: they ask for no replicas.
    await admin.publish("orders", [OutgoingMessage(body="later", delay_ms=600_000)] * 2)
    leased = await admin.receive("orders", "billing", "worker-1", max=2)
    await admin.ack("orders", "billing", [leased[0].receipt])
    proxy = _context(pki, pki.proxy_client)
    async with serving(pki, _directory(broker), StatsCache(_brokers, ttl=0)) as url:
        status, body = await _get(url + LAG, proxy)
        assert status == 200
        # billing: 3 ready + 1 in flight (1 acked); audit: all 5 ready.
        assert _values(body) == {"billing": "4", "audit": "5"}
        for item in body["items"]:
            assert item["metricLabels"] == {"namespace": "shop", "queue": "orders",
                                            "group": item["metricLabels"]["group"]}
        status, body = await _get(url + LAG, proxy, labelSelector="queue=orders,group=billing")
        assert _values(body) == {"billing": "4"}


async def test_a_burst_of_requests_costs_one_broker_read(
        pki: Pki, broker: BrokerProcess, admin: BrokerClient) -> None:
    await admin.publish("orders", [OutgoingMessage(body=n) for n in range(3)])
    cache = StatsCache(_brokers, ttl=3600)
    proxy = _context(pki, pki.proxy_client)
    async with serving(pki, _directory(broker), cache) as url:
        answers = await asyncio.gather(*(_get(url + LAG, proxy, labelSelector="group=billing")
                                         for _ in range(10)))
        assert {_values(body)["billing"] for _, body in answers} == {"3"}
        # Within the TTL the cached figure stands, even though the broker moved on.
        await admin.publish("orders", [OutgoingMessage(body="more")])
        _, body = await _get(url + LAG, proxy, labelSelector="group=billing")
        assert _values(body) == {"billing": "3"}
        assert cache.reads == 1
        assert cache.hits == 10


async def test_a_missing_group_is_a_503_naming_it(
        pki: Pki, broker: BrokerProcess, admin: BrokerClient) -> None:
    directory = StaticDirectory([GroupRef("shop", "orders", "billing", broker.url),
                                 GroupRef("shop", "orders", "ghost", broker.url)])
    async with serving(pki, directory, StatsCache(_brokers, ttl=0)) as url:
        status, body = await _get(url + LAG, _context(pki, pki.proxy_client))
    assert (status, body["reason"]) == (503, "ServiceUnavailable")
    assert "shop/orders/ghost" in body["message"]
    assert "billing" not in body["message"]


async def test_a_token_protected_broker_is_read_with_the_group_token(
        pki: Pki, guarded_broker: BrokerProcess) -> None:
    async with BrokerClient(guarded_broker.url, token=GUARDED_TOKEN) as client:
        await client.put_queue("orders")
        await client.put_group("orders", "billing")
        await client.publish("orders", [OutgoingMessage(body=n) for n in range(3)])
    directory = StaticDirectory([GroupRef("shop", "orders", "billing", guarded_broker.url,
                                          GUARDED_TOKEN)])
    async with serving(pki, directory, StatsCache(_brokers, ttl=0)) as url:
        status, body = await _get(url + LAG, _context(pki, pki.proxy_client))
    assert status == 200 and _values(body) == {"billing": "3"}
