"""testsupport.repeating: the background repeat the kubelets and the build ticker share."""

import threading

import pytest
from testsupport.repeating import repeating
from testsupport.waiting import eventually

pytestmark = pytest.mark.unit


def test_the_action_repeats_while_the_block_runs_and_stops_after() -> None:
    calls: list[int] = []
    with repeating(lambda: calls.append(1), 0.01, "counting"):
        eventually(lambda: len(calls) >= 3, "three repeats", timeout=60)
    after = len(calls)
    assert not any(t.name == "counting" for t in threading.enumerate())
    assert len(calls) == after


def test_a_failing_action_stops_and_fails_the_block_at_its_end() -> None:
    calls: list[int] = []

    def fail() -> None:
        calls.append(1)
        raise ValueError("boom")

    with (pytest.raises(RuntimeError, match="the kubelet failed") as raised,
          repeating(fail, 0.01, "the kubelet")):
        eventually(lambda: len(calls) > 0, "a first call", timeout=60)
    assert isinstance(raised.value.__cause__, ValueError)
    assert len(calls) == 1
