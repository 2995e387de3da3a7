"""Small blocking HTTP helpers for the demo's polling (stdlib only: nothing to await)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from typing import Any

from testsupport.waiting import GaveUpError, answers, eventually


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


def wait_until_answers(url: str, timeout: float,
                       check: Callable[[], None] | None = None) -> bool:
    """Poll `url` until it answers 2xx; `check()` runs between tries (to fail fast)."""

    def probe() -> bool:
        if answers(url):
            return True
        if check is not None:
            check()
        return False

    try:
        eventually(probe, f"{url} to answer", timeout)
    except GaveUpError:
        return False
    return True
