"""Loop mode: how far each replay of an input moves its timestamps."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from itertools import pairwise

DEFAULT_STEP = timedelta(seconds=1)


def loop_span(timestamps: Iterable[datetime]) -> timedelta:
    """The input's duration plus one scrape interval, so loop k+1 starts one interval after
    loop k ends: the replay looks like the same fleet still reporting, never overlapping."""
    distinct = sorted(set(timestamps))
    if not distinct:
        return DEFAULT_STEP
    gaps = [b - a for a, b in pairwise(distinct)]
    step = min(gaps) if gaps else DEFAULT_STEP
    return distinct[-1] - distinct[0] + step
