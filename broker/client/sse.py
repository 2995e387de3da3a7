"""A Server-Sent Events parser (pure): lines in, complete events out."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Event:
    event: str
    data: str
    id: str | None = None


@dataclass
class EventParser:
    """Feed it the stream's lines one at a time; a blank line completes an event.

    Follows the WHATWG rules that matter here: `data:` lines join with newlines, one
    leading space after the colon is dropped, `:` lines are comments (keep-alives).
    """

    _event: str = ""
    _data: list[str] = field(default_factory=list)
    _id: str | None = None

    def feed(self, raw: bytes | str) -> Event | None:
        line = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        line = line.rstrip("\r\n")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            self._id = value
        return None

    def _dispatch(self) -> Event | None:
        if not self._data:
            self._event = ""
            return None
        event = Event(self._event or "message", "\n".join(self._data), self._id)
        self._event, self._data = "", []
        return event
