"""Splitting one input between streamers; the rate limiter's arithmetic."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferry.telemetry.parsing.pacing import Pace
from ferry.telemetry.parsing.rows import COLUMNS, column_positions
from ferry.telemetry.parsing.splitting import Split, is_mine, owner, split_key

pytestmark = pytest.mark.unit
POS = column_positions(COLUMNS)


def record(uuid: str, value: str = "1") -> list[str]:
    r = dict.fromkeys(COLUMNS, "x")
    r.update(uuid=uuid, value=value)
    return [r[c] for c in COLUMNS]


@given(st.lists(st.text(min_size=1), min_size=1, max_size=50), st.integers(1, 7))
def test_every_key_has_exactly_one_owner(keys: list[str], count: int) -> None:
    for key in keys:
        owners = [i for i in range(count) if owner(key, count) == i]
        assert len(owners) == 1


def test_rows_of_one_gpu_go_to_one_streamer_and_the_work_is_shared() -> None:
    uuids = [f"GPU-{i:08x}-0000-0000-0000-000000000000" for i in range(32)]
    for count in (2, 3):
        mine = [[u for u in uuids if is_mine(record(u), POS, i, count)] for i in range(count)]
        # A partition: nothing lost or doubled.
        assert sorted(u for part in mine for u in part) == sorted(uuids)
        assert all(mine)  # nobody idles with 32 GPUs to share
        i = next(i for i in range(count) if is_mine(record(uuids[0]), POS, i, count))
        assert is_mine(record(uuids[0], value="999"), POS, i, count)


def test_a_record_too_short_to_name_its_gpu_still_has_one_owner() -> None:
    short = ["2026-11-23T10:00:00Z", "DCGM_FI_DEV_GPU_UTIL"]
    assert split_key(short, POS).startswith("raw:")
    assert sum(is_mine(short, POS, i, 3) for i in range(3)) == 1


def test_a_split_answers_as_is_mine_does_for_every_record() -> None:
    """Split keeps owners by uuid text; a record without one is asked afresh each time."""
    uuids = [f"GPU-{i:08x}-0000-0000-0000-000000000000" for i in range(16)]
    records = [record(u, value=str(v)) for v in range(3) for u in uuids]
    records += [record(f" {uuids[0]} "), record(""), record(" "), ["x"], ["y"], ["x"]]
    for count in (1, 2, 3):
        for i in range(count):
            split = Split(POS, i, count)
            assert [split.mine(r) for r in records * 2] == [
                is_mine(r, POS, i, count) for r in records * 2]


def test_owner_rejects_a_zero_count() -> None:
    with pytest.raises(ValueError, match=">= 1"):
        owner("k", 0)


def test_unlimited_pace_never_waits() -> None:
    pace = Pace(rate=None, batch_size=500)
    assert pace.batch() == 500
    assert pace.delay(sent=10**9, elapsed=0.0) == 0.0


def test_paced_streamer_waits_until_the_rate_is_met() -> None:
    pace = Pace(rate=100.0, batch_size=500)
    assert pace.batch() == 10  # ~10 publishes a second, not one burst of 500
    assert pace.delay(sent=100, elapsed=0.25) == pytest.approx(0.75)
    assert pace.delay(sent=100, elapsed=1.5) == 0.0  # behind schedule: no wait
    assert Pace(rate=0.5).batch() == 1
    assert Pace(rate=1e6, batch_size=500).batch() == 500


@given(st.floats(0.1, 1e5), st.integers(0, 10**6))
def test_sending_at_the_computed_times_never_exceeds_the_rate(rate: float, sent: int) -> None:
    pace = Pace(rate=rate)
    elapsed = pace.delay(sent=sent, elapsed=0.0)
    assert sent <= rate * elapsed + 1e-6 * max(1, sent)


@pytest.mark.parametrize("rate", [0.0, -1.0, float("inf"), float("nan")])
def test_nonsense_rates_are_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        Pace(rate=rate)
