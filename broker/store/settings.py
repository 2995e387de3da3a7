"""Stored queue and group settings, read back even when written under other bounds.

A data directory written by an older broker (or a store edited by hand) may hold
settings today's models refuse: a number beyond its bound (older brokers had
none), NaN stored as null. Refusing to start would brick the broker; each such
value is clamped into its bound (or, failing that, takes its default), and the
load says so in the log. Both engines read settings through here.
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from ferry.broker.bounds import limits

log = logging.getLogger("ferry.broker.store")

M = TypeVar("M", bound=BaseModel)


def from_storage(model: type[M], text: str | bytes, what: str) -> M:
    raw = orjson.loads(text)
    try:
        return model.model_validate(raw)
    except ValidationError:
        pass
    fixed = _clamped(model, raw) if isinstance(raw, dict) else {}
    try:
        loaded = model.model_validate(fixed)
    except ValidationError as e:  # what clamping cannot mend takes its default
        bad = {err["loc"][0] for err in e.errors() if err["loc"]}
        loaded = model.model_validate({k: v for k, v in fixed.items() if k not in bad})
    log.warning("stored settings out of bounds: loaded within them", extra={
        "what": what, "stored": raw, "loaded": loaded.model_dump(mode="json"),
    })
    return loaded


def _clamped(model: type[BaseModel], raw: dict[str, Any]) -> dict[str, Any]:
    out = dict(raw)
    for name, bounds in limits(model).items():
        value = out.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        high, low = bounds.get("maximum"), bounds.get("minimum")
        if value != value or (low is None and "exclusiveMinimum" in bounds
                              and value <= bounds["exclusiveMinimum"]):
            out.pop(name)  # NaN, or not above an exclusive minimum: the default
            continue
        if high is not None and value > high:
            value = high
        if low is not None and value < low:
            value = low
        out[name] = int(value) if isinstance(high, int) and value == int(value) else value
    for name, field in model.model_fields.items():
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel) and isinstance(out.get(name), dict):
            out[name] = _clamped(sub, out[name])
    return out
