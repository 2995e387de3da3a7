"""Lease bookkeeping of a Consumer: which receipts are due for extension, and when."""

import pytest

from ferry.broker.client.leases import Leases
from ferry.broker.models import Delivery

pytestmark = pytest.mark.unit


def _delivery(receipt: str) -> Delivery:
    return Delivery(
        id=receipt, body=None, key=None, priority=0, headers={}, delivery_count=1, receipt=receipt
    )


def test_a_lease_is_due_once_less_than_half_of_it_is_left() -> None:
    leases = Leases(visibility_s=10.0)
    leases.add([_delivery("a")], now=100.0)
    leases.add([_delivery("b")], now=103.0)
    assert leases.next_due() == 105.0
    assert leases.due(104.9) == []
    assert leases.due(105.0) == ["a"]
    assert sorted(leases.due(108.0)) == ["a", "b"]


def test_renewing_moves_the_deadline_and_dropping_forgets() -> None:
    leases = Leases(visibility_s=10.0)
    leases.add([_delivery("a"), _delivery("b")], now=0.0)
    leases.renewed(["a", "unknown"], now=6.0)
    assert leases.due(6.0) == ["b"]
    assert leases.next_due() == 5.0
    leases.drop(["b"])
    assert leases.next_due() == 11.0
    assert "b" not in leases and len(leases) == 1
    leases.drop(["a"])
    assert leases.next_due() is None
