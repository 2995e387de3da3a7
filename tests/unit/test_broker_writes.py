"""A group commit's writes merged into runs: what both storage engines apply."""

from __future__ import annotations

from ferry.broker.core import Kind, Writes
from ferry.broker.core.writes import merged


def test_runs_of_one_kind_join_across_requests_in_order_and_the_last_totals_win() -> None:
    a, b = Writes(), Writes()
    a.add(Kind.MESSAGE, (1,))
    a.add(Kind.MESSAGE, (2,))
    a.totals[7] = (2, 3)
    b.add(Kind.MESSAGE, (3,))
    b.add(Kind.ACK, (9, 1))
    b.add(Kind.MESSAGE, (4,))
    b.totals[7] = (4, 5)
    b.group_totals[9] = 1
    runs, totals, group_totals = merged((w.ops, w.totals, w.group_totals) for w in (a, b))
    assert runs == [(Kind.MESSAGE, [(1,), (2,), (3,)]), (Kind.ACK, [(9, 1)]),
                    (Kind.MESSAGE, [(4,)])]
    assert (totals, group_totals) == ({7: (4, 5)}, {9: 1})
    assert a.ops == [(Kind.MESSAGE, [(1,), (2,)])]  # the requests' own rows are not changed


def test_nothing_to_write_is_nothing_to_apply() -> None:
    assert merged([]) == ([], {}, {})
