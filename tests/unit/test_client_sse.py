"""The Server-Sent Events parser."""

import pytest

from ferry.broker.client.sse import Event, EventParser

pytestmark = pytest.mark.unit


def _feed(parser: EventParser, text: str) -> list[Event]:
    events = [parser.feed(line) for line in text.splitlines(keepends=True)]
    return [e for e in events if e is not None]


def test_events_end_at_a_blank_line_and_data_lines_join() -> None:
    parser = EventParser()
    text = ': keep-alive\n\nevent: deliver\nid: 7\ndata: {"a":\ndata:1}\n\ndata: plain\r\n\r\n'
    assert _feed(parser, text) == [
        Event("deliver", '{"a":\n1}', "7"),
        Event("message", "plain", "7"),  # the last event id carries over
    ]


def test_an_event_split_across_reads_is_completed_later() -> None:
    parser = EventParser()
    assert _feed(parser, "data: x\n") == []
    assert _feed(parser, "\n") == [Event("message", "x")]
