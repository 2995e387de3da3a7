"""W3C trace context and OpenTelemetry spans, at no cost unless an SDK is configured.

Ferry depends on opentelemetry-api only. A program (or a test) that wants spans
installs the SDK and sets a tracer provider; until then `tracer()` answers None
after one dictionary lookup (the API is not even imported), so the broker's
publish and delivery paths and the client pay nothing.

A message carries its producer's context in its `traceparent` header (the W3C
format, version 00): `span(..., parent=traceparent)` continues that trace.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Tracer

Kind = Literal["internal", "server", "client", "producer", "consumer"]

TRACEPARENT = "traceparent"  # the HTTP header and the message header
# Version 00: version-traceid-parentid-flags in lowercase hex, the ids not all zeros
# (https://www.w3.org/TR/trace-context/). ECMA-262 and Python read it alike; it is
# matched whole (fullmatch: no trailing newline).
TRACEPARENT_PATTERN = r"^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$"
_TRACEPARENT = re.compile(TRACEPARENT_PATTERN)
_SDK = "opentelemetry.sdk.trace"


def valid_traceparent(value: str) -> bool:
    return _TRACEPARENT.fullmatch(value) is not None


def tracer(name: str) -> Tracer | None:
    """The tracer of the configured SDK, or None: no SDK loaded, or no provider set."""
    if _SDK not in sys.modules:
        return None
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    return provider.get_tracer(name)


def current_traceparent() -> str | None:
    """The traceparent of the current span (to send with a publish), if one is recording."""
    if _SDK not in sys.modules:
        return None
    from opentelemetry import trace

    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def traceparent_of(headers: Mapping[str, str] | None) -> str | None:
    value = headers.get(TRACEPARENT) if headers else None
    return value if value is not None and valid_traceparent(value) else None


@contextmanager
def span(
    t: Tracer | None, name: str, kind: Kind = "internal", *, parent: str | None = None,
    attributes: Mapping[str, str | int] | None = None,
) -> Iterator[Span | None]:
    """A span of tracer t, current inside the block (None without a tracer). `parent`: a
    traceparent to continue (a message's, a request's); else the current span's child."""
    if t is None:
        yield None
        return
    from opentelemetry import trace

    with t.start_as_current_span(name, context=_context_of(parent),
                                 kind=trace.SpanKind[kind.upper()],
                                 attributes=dict(attributes or {})) as s:
        yield s


@contextmanager
def spans_each(
    t: Tracer | None, name: str, kind: Kind, parents: Iterable[str | None],
    attributes: Mapping[str, str | int] | None = None,
) -> Iterator[None]:
    """One span per message of a batch processed at once, each the child of its own
    message's traceparent, open for the block (none current: they have no one parent).
    `parents` is not read without a tracer."""
    if t is None:
        yield
        return
    from opentelemetry import trace

    kind_of = trace.SpanKind[kind.upper()]
    opened = [t.start_span(name, context=_context_of(p), kind=kind_of,
                           attributes=dict(attributes or {})) for p in parents]
    try:
        yield
    finally:
        for s in opened:
            s.end()


def _context_of(parent: str | None) -> Context | None:
    """A context whose span is the remote one a traceparent names (None: no parent)."""
    if parent is None or not valid_traceparent(parent):
        return None
    from opentelemetry import trace

    remote = trace.SpanContext(
        trace_id=int(parent[3:35], 16), span_id=int(parent[36:52], 16), is_remote=True,
        trace_flags=trace.TraceFlags(int(parent[53:55], 16)))
    return trace.set_span_in_context(trace.NonRecordingSpan(remote))
