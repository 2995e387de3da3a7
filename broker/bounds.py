"""The bounds of every number and list a client sends, read from the request models.

`python -m ferry.broker.bounds` prints them as the Markdown table docs/broker.md
carries (a unit test keeps the two equal), so the documentation cannot drift
from what the broker enforces.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

from ferry.broker import models as m

REQUESTS: list[type[BaseModel]] = [
    m.QueueSettings, m.GroupSettings, m.HeaderFilter, m.Backoff, m.OutgoingMessage,
    m.PublishRequest, m.ReceiveRequest, m.ReceiptsRequest, m.NackRequest, m.ExtendRequest,
    m.RedriveRequest,
    m.PriorityChange, m.BrowseQuery, m.WsPublish, m.WsSubscribe, m.WsSettle, m.WsBrowse,
    m.WsCancel, m.WsPurge, m.WsUnsubscribe,
]
_KEYS = ("minimum", "exclusiveMinimum", "maximum", "minLength", "maxLength",
         "minItems", "maxItems", "maxProperties")


def _variants(prop: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield prop
    yield from prop.get("anyOf", ())


def limits(model: type[BaseModel]) -> dict[str, dict[str, Any]]:
    """field -> {JSON Schema keyword: value} for every bounded field of the model."""
    out: dict[str, dict[str, Any]] = {}
    for name, prop in model.model_json_schema()["properties"].items():
        found = {k: v for variant in _variants(prop) for k, v in variant.items() if k in _KEYS}
        if found:
            out[name] = found
    return out


def _text(bounds: dict[str, Any]) -> str:
    low = bounds.get("minimum", bounds.get("minLength", bounds.get("minItems")))
    high = bounds.get("maximum", bounds.get("maxLength", bounds.get(
        "maxItems", bounds.get("maxProperties"))))
    what = ("length " if "maxLength" in bounds else "items " if "maxItems" in bounds
            else "entries " if "maxProperties" in bounds else "")
    if "exclusiveMinimum" in bounds:
        low_text = f"> {bounds['exclusiveMinimum']:,}"
    else:
        low_text = f">= {low:,}" if low is not None else ""
    high_text = f"<= {high:,}" if high is not None else ""
    return what + ", ".join(t for t in (low_text, high_text) if t)


def table() -> str:
    rows = ["| request model | field | bound |", "|---|---|---|"]
    for model in REQUESTS:
        for field, bounds in limits(model).items():
            rows.append(f"| `{model.__name__}` | `{field}` | {_text(bounds)} |")
    return "\n".join(rows) + "\n"


def main() -> int:
    sys.stdout.write(table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
