"""The External Metrics API server over real TLS: discovery, front-proxy authentication,
errors as Kubernetes Status documents."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from ferry.operator.metricsapi import certificates, frontproxy
from ferry.operator.metricsapi.access import AllowAuthenticated
from ferry.operator.metricsapi.lags import LagReader, StaticDirectory, StatsCache, StatsClient
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


def _no_broker(url: str) -> StatsClient:
    raise AssertionError(f"no broker expected in this test, asked for {url}")


@pytest.fixture
async def server(pki: Pki) -> AsyncIterator[str]:
    cache = StatsCache(_no_broker)
    app = make_app(LagReader(StaticDirectory([]), cache), cache, pki.requestheader,
                   AllowAuthenticated())
    context = frontproxy.server_context(str(pki.server[0]), str(pki.server[1]), pki.requestheader)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    yield f"https://127.0.0.1:{port}"
    await runner.cleanup()


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
        assert (response.status, await response.text()) == (200, "ok")


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

