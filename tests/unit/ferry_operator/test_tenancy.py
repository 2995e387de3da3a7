"""Broker tokens and external-broker policy: who may use which broker, what status may say."""

from __future__ import annotations

import pytest

from ferry.broker.client import BrokerError, NotFound, Unavailable
from ferry.operator.clients.brokers import _translated
from ferry.operator.clients.errors import BrokerTrouble
from ferry.operator.reconcile import queues, tenancy
from ferry.operator.reconcile.observations import Problem
from ferry.operator.reconcile.specs import KeyRef, Owner, QueueSpec

from .conftest import DEFAULTS, Defaulted

pytestmark = pytest.mark.unit
OWNER = Owner(api_version="ferry.dev/v1alpha1", kind="Queue", name="orders", namespace="shop",
              uid="u-1", generation=1)
EXTERNAL = {"url": "http://ext:9", "connectionSecret": {"name": "ext-conn"}}


def spec(defaulted: Defaulted, **fields: object) -> QueueSpec:
    return QueueSpec.model_validate(defaulted("Queue", dict(fields)))


def test_a_managed_broker_requires_the_token_of_its_own_secret(defaulted: Defaulted) -> None:
    s = spec(defaulted)
    assert tenancy.token_ref("orders", s) == KeyRef(name="orders-broker-token", key="token")
    sts = next(c for c in queues.children(OWNER, s, DEFAULTS) if c["kind"] == "StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    flag = container["args"].index("--token-file")
    mount = next(m for m in container["volumeMounts"] if m["name"] == "token")
    assert container["args"][flag + 1] == mount["mountPath"]  # every key of the Secret
    (volume,) = pod["volumes"]
    assert volume["secret"] == {"secretName": "orders-broker-token"}
    secret = queues.token_secret(OWNER, "t0k3n")
    assert secret["stringData"] == {"token": "t0k3n"}
    assert secret["metadata"]["ownerReferences"][0]["uid"] == "u-1"


def test_an_external_broker_uses_its_connection_secret(defaulted: Defaulted) -> None:
    s = spec(defaulted, broker=EXTERNAL)
    assert tenancy.token_ref("orders", s) == KeyRef(name="ext-conn", key="token")


@pytest.mark.parametrize(("allowed", "refused"), [
    (frozenset(), True), (frozenset({"other"}), True), (frozenset({"shop"}), False),
    (frozenset({"*"}), False)])
def test_external_brokers_only_from_permitted_namespaces(defaulted: Defaulted,
                                                         allowed: frozenset[str],
                                                         refused: bool) -> None:
    failure = tenancy.refusal("shop", spec(defaulted, broker=EXTERNAL), allowed)
    assert (failure is not None) is refused
    if failure is not None:
        assert failure.problem is Problem.NOT_ALLOWED
    assert tenancy.refusal("shop", spec(defaulted), frozenset()) is None  # managed: always


@pytest.mark.parametrize(("error", "problem"), [
    (BrokerError(401, "unauthorized", "token SECRET-ECHO rejected"), Problem.UNAUTHORIZED),
    (BrokerError(302, "bad_request", "HTTP 302: <html>SECRET-ECHO</html>"), Problem.REJECTED),
    (BrokerError(500, "weird-code SECRET-ECHO", "SECRET-ECHO"), Problem.REJECTED),
    (NotFound(404, "queue_not_found", "SECRET-ECHO"), Problem.MISSING),
    (Unavailable(0, "unavailable", "Cannot connect to 10.1.2.3:80 SECRET-ECHO"),
     Problem.UNREACHABLE)])
async def test_nothing_the_remote_end_says_reaches_status(error: BrokerError,
                                                          problem: Problem) -> None:
    with pytest.raises(BrokerTrouble) as caught:
        async with _translated("http://ext:9"):
            raise error
    assert Problem(caught.value.problem) is problem
    assert "SECRET-ECHO" not in caught.value.message and "10.1.2.3" not in caught.value.message
    assert caught.value.message.startswith("http://ext:9: ")
    assert len(caught.value.message) < 120
