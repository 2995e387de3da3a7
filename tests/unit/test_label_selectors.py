"""labelSelector parsing and matching, as the API server's grammar defines it."""

import pytest

from ferry.operator.metricsapi.selectors import SelectorError, parse

pytestmark = pytest.mark.unit

LABELS = {"namespace": "shop", "queue": "orders", "group": "billing"}


@pytest.mark.parametrize("text", [
    "", None, "queue=orders", "queue==orders", "queue=orders,group=billing",
    "group!=audit", "queue in (orders, refunds)", "group notin (audit)", "queue", "!tier",
    "queue in (orders),group=billing, namespace = shop",
])
def test_matching_selectors(text: str | None) -> None:
    assert parse(text).matches(LABELS)


@pytest.mark.parametrize("text", [
    "queue=refunds", "group!=billing", "queue in (refunds,returns)", "group notin (billing)",
    "tier", "!queue", "queue=orders,group=audit",
])
def test_non_matching_selectors(text: str) -> None:
    assert not parse(text).matches(LABELS)


@pytest.mark.parametrize(("text", "message"), [
    ("queue=orders,", "empty requirement"),
    ("queue in (a,b", "unbalanced parentheses"),
    ("queue in ((a))", "unbalanced parentheses"),
    ("queue=not valid!", "invalid label value"),
    ("-queue=x", "invalid label key"),
    ("queue=" + "x" * 64, "invalid label value"),
])
def test_bad_selectors_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(SelectorError, match=message):
        parse(text)
