"""Input lines to message bodies and bodies back to output lines (pure)."""

from __future__ import annotations

from typing import Any

import orjson


def body_of(line: str, *, text: bool = False) -> Any:
    """A line's JSON value, or the line itself as a string when it is not JSON (or `text`)."""
    line = line.rstrip("\r\n")
    if text:
        return line
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return line


def line_of(body: Any) -> str:
    """The inverse of `body_of`: strings that would not read back as themselves stay JSON."""
    if isinstance(body, str) and "\n" not in body and body_of(body) == body:
        return body
    return orjson.dumps(body).decode()
