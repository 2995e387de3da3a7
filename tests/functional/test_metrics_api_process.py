"""`ferry-metrics-api` as a process: flags, refusal of bad input, 503 for an unreachable
broker, graceful exit on SIGTERM."""

from __future__ import annotations

import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests  # type: ignore[import-untyped]
from cryptography import x509
from testsupport.ports import free_port
from testsupport.processes import Process
from testsupport.waiting import eventually

from ferry.operator.metricsapi import certificates

pytestmark = pytest.mark.functional

BASE = "/apis/external.metrics.k8s.io/v1beta1"
# The console script runs exactly this module.
EXE = [sys.executable, "-m", "ferry.operator.metricsapi"]


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    proxy_ca = certificates.make_ca("front-proxy-ca")
    client = certificates.issue(proxy_ca, "front-proxy-client", client=True)
    ca_file = proxy_ca.write(tmp_path, "proxy-ca")[0]
    cert, key = client.write(tmp_path, "proxy-client")
    serving_ca = certificates.make_ca("serving-ca")
    server = certificates.issue(serving_ca, "localhost", hosts=("localhost", "127.0.0.1"))
    server_cert, server_key = server.write(tmp_path, "server")
    return {"ca": ca_file, "cert": cert, "key": key, "serving_ca": serving_ca.write(
        tmp_path, "serving-ca")[0], "server_cert": server_cert, "server_key": server_key}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EXE, *args], capture_output=True, text=True, timeout=60, check=False)


def test_help_names_the_api_it_serves() -> None:
    out = _run("--help")
    assert out.returncode == 0
    assert "external.metrics.k8s.io" in out.stdout


def test_a_malformed_group_flag_is_refused_with_the_expected_form(pki: dict[str, Path]) -> None:
    out = _run("--group", "shop/orders", "--requestheader-client-ca-file", str(pki["ca"]))
    assert out.returncode == 2
    assert "expected NAMESPACE/QUEUE/GROUP=BROKER_URL" in out.stderr


def test_half_a_serving_certificate_is_refused(pki: dict[str, Path]) -> None:
    out = _run("--tls-cert-file", str(pki["cert"]), "--group", "a/b/c=http://x",
               "--requestheader-client-ca-file", str(pki["ca"]))
    assert out.returncode != 0
    assert "--tls-private-key-file" in out.stderr


@pytest.fixture
def server(pki: dict[str, Path], tmp_path: Path) -> Iterator[tuple[Process, str]]:
    port, dead_broker = free_port(), free_port()
    process = Process(
        [*EXE, "--bind-address", "127.0.0.1", "--secure-port", str(port),
         "--tls-cert-file", str(pki["server_cert"]),
         "--tls-private-key-file", str(pki["server_key"]),
         "--requestheader-client-ca-file", str(pki["ca"]),
         "--requestheader-allowed-names", "front-proxy-client",
         "--group", f"shop/orders/billing=http://127.0.0.1:{dead_broker}",
         "--broker-timeout", "2"], tmp_path / "metrics-api.log").start()
    url = f"https://127.0.0.1:{port}"
    try:
        def listening() -> bool:
            try:
                requests.get(url + "/readyz", verify=str(pki["serving_ca"]), timeout=2)
            except requests.ConnectionError:
                process.check()
                return False
            return True

        eventually(listening, "ferry-metrics-api to listen", 60, interval=0.1)
        yield process, url
    finally:
        process.kill()


def test_an_unreachable_broker_is_a_503_naming_it(
        server: tuple[Process, str], pki: dict[str, Path]) -> None:
    _, url = server
    answer = requests.get(url + BASE + "/namespaces/shop/ferry_consumergroup_lag",
                          params={"labelSelector": "group=billing"},
                          headers={"X-Remote-User": "system:hpa"},
                          cert=(str(pki["cert"]), str(pki["key"])),
                          verify=str(pki["serving_ca"]), timeout=30)
    body = answer.json()
    assert (answer.status_code, body["reason"]) == (503, "ServiceUnavailable")
    assert "shop/orders/billing" in body["message"]
    assert "http://127.0.0.1:" in body["message"]


def test_sigterm_stops_it_cleanly(server: tuple[Process, str]) -> None:
    process, _ = server
    assert process.stop() == 0, process.tail()
    assert '"msg":"serving"' in process.tail()


def test_self_signed_certificate_names_the_service(pki: dict[str, Path], tmp_path: Path) -> None:
    port = free_port()
    process = Process(
        [*EXE, "--bind-address", "127.0.0.1", "--secure-port", str(port),
         "--service", "lag", "--namespace", "ops",
         "--requestheader-client-ca-file", str(pki["ca"]), "--group", "a/b/c=http://x"],
        tmp_path / "metrics-api.log").start()
    try:
        def certificate() -> str | None:
            try:
                return ssl.get_server_certificate(("127.0.0.1", port), timeout=2)
            except OSError:
                process.check()
                return None

        pem = eventually(certificate, "ferry-metrics-api to listen", 60, interval=0.1)
    finally:
        process.stop()
    cert = x509.load_pem_x509_certificate(pem.encode())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "lag.ops.svc" in names.get_values_for_type(x509.DNSName)
