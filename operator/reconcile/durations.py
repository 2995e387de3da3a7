"""Kubernetes-style duration strings ("30s", "1h30m", "250ms") to milliseconds.

The CRD's pattern has already accepted the string; this only converts it.
"""

import re

_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}


def to_ms(text: str) -> int:
    parts = _PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r} (expected e.g. '30s', '5m', '1h30m')")
    return round(sum(float(n) * _MS[u] for n, u in parts))


def from_ms(ms: int) -> str:
    """Shortest readable form for status: 1500 -> '1.5s', 90000 -> '1m30s'."""
    if ms < 1000:
        return f"{ms}ms"
    seconds, rest = divmod(ms, 1000)
    if seconds < 60:
        return f"{seconds}s" if rest == 0 else f"{ms / 1000:g}s"
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    return text + (f"{seconds}s" if seconds else "")
