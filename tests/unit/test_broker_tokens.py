"""The token file's lines, the rate bucket and the rights of routes and frames (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter

from ferry.broker.models import ErrorCode, WsFrame, WsRequest
from ferry.broker.store.postgres import PgStore
from ferry.broker.transport import app, auth, openapi
from ferry.broker.transport.buckets import Bucket
from ferry.broker.transport.keyring import Keyring
from ferry.broker.transport.rights import ADMIN, ROUTE_RIGHTS, frame_rights
from ferry.broker.transport.tokens import (
    MAX_RATE,
    Grant,
    Right,
    TokenFileError,
    parse_token_files,
    parse_tokens,
)

pytestmark = pytest.mark.unit

SECRET = "s3cr3t-never-shown"
FRAME: TypeAdapter[WsFrame] = TypeAdapter(WsRequest)


def test_a_line_holds_rights_queues_and_a_rate() -> None:
    grants = parse_tokens(
        "# ops\nold-style\n\n  s3cr3t publish,read queues=orders-*,audit rate=50/s\n"
        "reader read\n")
    assert grants["old-style"] == Grant(frozenset({Right.ADMIN}), line=2)
    assert grants["s3cr3t"] == Grant(frozenset({Right.PUBLISH, Right.READ}),
                                     ("orders-*", "audit"), 50, line=4)
    assert grants["reader"] == Grant(frozenset({Right.READ}), line=5)


def test_options_come_in_any_order() -> None:
    grant = parse_tokens("t consume rate=5/s queues=a?\n")["t"]
    assert (grant.queues, grant.rate) == (("a?",), 5)


@pytest.mark.parametrize(("text", "line", "reason"), [
    (f"ok\n{SECRET} publsh\n", 2, "rights"),
    (f"{SECRET} publish,\n", 1, "rights"),
    (f"{SECRET} publish queues=\n", 1, "globs"),
    (f"{SECRET} publish queues=Orders\n", 1, "globs"),
    (f"{SECRET} publish rate=0/s\n", 1, "rate="),
    (f"{SECRET} publish rate=5/m\n", 1, "rate="),
    (f"{SECRET} publish rate={MAX_RATE + 1}/s\n", 1, "rate="),
    (f"{SECRET} publish rate=99999999999999999999/s\n", 1, "rate="),
    (f"{SECRET} publish rate=1/s rate=2/s\n", 1, "twice"),
    (f"{SECRET} publish {SECRET}\n", 1, "only queues="),
    (f"{SECRET} admin queues=a*\n", 1, "admin covers every queue"),
    (f"read {SECRET}\n", 1, "rights"),  # swapped: the token is never echoed
    (f"{SECRET}\n# again\n{SECRET} read\n", 3, "repeats the token of line 1"),
    (f"x publish queues={','.join(['a'] * 101)}\n", 1, "globs"),
])
def test_a_malformed_line_is_named_by_number_never_by_its_text(
    text: str, line: int, reason: str
) -> None:
    with pytest.raises(TokenFileError) as bad:
        parse_tokens(text)
    assert bad.value.line == line
    assert reason in str(bad.value)
    assert SECRET not in str(bad.value) and f"line {line}:" in str(bad.value)


def test_the_files_of_a_directory_are_one_token_file() -> None:
    grants = parse_token_files([("token", "op3rator\n"), ("tokens", "p publish rate=5/s\n")])
    assert grants["op3rator"].where == "token line 1" and grants["p"].where == "tokens line 1"
    with pytest.raises(TokenFileError, match=r"^tokens line 2: repeats the token of token line 1"):
        parse_token_files([("token", f"{SECRET}\n"), ("tokens", f"# x\n{SECRET} read\n")])
    with pytest.raises(TokenFileError, match=r"^tokens line 1: the field after"):
        parse_token_files([("token", "a\n"), ("tokens", f"{SECRET} bogus\n")])


def test_admin_holds_every_right_on_every_queue() -> None:
    admin = parse_tokens("a\n")["a"]
    assert all(admin.allows(r, "any-queue") for r in Right)
    scoped = parse_tokens("p publish,read queues=orders-*\n")["p"]
    assert scoped.allows(Right.PUBLISH, "orders-eu")
    assert not scoped.allows(Right.PUBLISH, "billing")
    assert not scoped.allows(Right.CONSUME, "orders-eu")
    assert not scoped.allows(Right.ADMIN)
    assert scoped.allows(Right.READ)  # no queue named: e.g. the list, filtered by covers
    assert [q for q in ("orders-1", "billing") if scoped.covers(q)] == ["orders-1"]


def test_the_bucket_allows_a_burst_of_one_second_then_the_rate() -> None:
    b = Bucket.full(4, now=100.0)
    assert [b.take(100.0) for _ in range(4)] == [0.0] * 4
    assert b.take(100.0) == pytest.approx(0.25)  # nothing taken: still 0.25 s away
    assert b.take(100.1) == pytest.approx(0.15)
    assert b.take(100.25) == 0.0
    assert b.take(100.25) > 0
    assert [b.take(200.0) for _ in range(5)].count(0.0) == 4  # refills to the burst, no more


def test_a_clock_that_goes_back_refills_nothing() -> None:
    b = Bucket.full(1, now=10.0)
    assert b.take(10.0) == 0.0
    assert b.take(5.0) > 0
    assert b.take(10.5) == pytest.approx(0.5)


def test_the_keyring_finds_tokens_and_counts_refusals() -> None:
    ring = Keyring(parse_tokens("adm\nlim publish queues=jobs rate=1/s\n"))
    assert ring.identify("nope") is None and ring.identify("") is None
    assert ring.identify("adm") == Grant(frozenset({Right.ADMIN}), line=1)
    lim = ring.identify("lim")
    assert lim is not None
    assert ring.check(lim, frozenset({Right.PUBLISH}), "jobs", now=1e9) is None
    limited = ring.check(lim, frozenset({Right.PUBLISH}), "jobs", now=1e9)
    assert limited is not None and limited.code == ErrorCode.RATE_LIMITED
    assert limited.retry_after == 1 and "line 2" in limited.message
    forbidden = ring.check(lim, frozenset({Right.PUBLISH}), "other", now=2e9)
    assert forbidden is not None and forbidden.code == ErrorCode.FORBIDDEN
    assert "queues=" in forbidden.message and "lim" not in forbidden.message.split("line")[0]
    assert ring.refusals == {ErrorCode.RATE_LIMITED: 1, ErrorCode.FORBIDDEN: 1}


def test_every_served_route_has_its_rights() -> None:
    """A new route must say which right it needs (unlisted: admin only, fail closed)."""
    a = app.build_app(app.standby_runtime(PgStore("postgresql://127.0.0.1:9/unused")))
    served = {(method.upper(), path) for method, path in openapi.served(a.router)}
    open_ = {("GET", path) for path in auth.OPEN_PATHS}
    assert served - open_ == ROUTE_RIGHTS.keys() - {("GET", "/openapi.json")}


def test_frames_need_their_http_twins_rights() -> None:
    frames = [
        {"op": "publish", "seq": 1, "queue": "q", "messages": [{"body": 1}]},
        {"op": "ack", "seq": 1, "queue": "q", "group": "g", "receipts": ["1.2.3"]},
        {"op": "cancel", "seq": 1, "queue": "q", "id": "1"},
        {"op": "unsubscribe", "seq": 2, "sub": 1},
    ]
    publish, ack, cancel, unsubscribe = (FRAME.validate_python(f) for f in frames)
    assert frame_rights(publish) == {Right.PUBLISH}
    assert frame_rights(ack) == ROUTE_RIGHTS["POST", "/v1/queues/{queue}/groups/{group}/ack"]
    assert frame_rights(cancel) == ADMIN
    assert frame_rights(unsubscribe) == frozenset()


TOKENS = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1,
                 max_size=40).filter(lambda t: not t.startswith("#"))
GLOBS = st.from_regex(r"\A[a-z0-9*?-]{1,20}\Z")
NON_ADMIN = st.frozensets(st.sampled_from([Right.PUBLISH, Right.CONSUME, Right.READ]),
                          min_size=1)


@given(token=TOKENS, rights=NON_ADMIN, globs=st.none() | st.lists(GLOBS, min_size=1,
                                                                  max_size=5),
       rate=st.none() | st.integers(1, MAX_RATE))
def test_every_written_grant_reads_back(token: str, rights: frozenset[Right],
                                        globs: list[str] | None, rate: int | None) -> None:
    line = " ".join([token, ",".join(sorted(rights)),
                     *([f"queues={','.join(globs)}"] if globs else []),
                     *([f"rate={rate}/s"] if rate else [])])
    assert parse_tokens(line) == {token: Grant(rights, tuple(globs) if globs else None, rate,
                                               line=1)}


@given(token=TOKENS, rest=st.lists(st.text(st.characters(min_codepoint=33, max_codepoint=126),
                                           min_size=1, max_size=30), max_size=4))
def test_a_bad_lines_message_says_nothing_of_its_token(token: str, rest: list[str]) -> None:
    """The message is the same whatever the token: it cannot carry it."""

    def message(t: str) -> str:
        with pytest.raises(TokenFileError) as bad:
            parse_tokens(" ".join([t, *rest]) + f"\n{t}\n")  # a repeat at the latest
        return str(bad.value)

    assert message(token) == message("Q0" if token != "Q0" else "Q1")


@given(rate=st.integers(1, 50), gaps=st.lists(st.floats(0, 0.5), min_size=1, max_size=200))
def test_a_bucket_never_grants_more_than_its_rate_and_one_burst(
        rate: int, gaps: list[float]) -> None:
    bucket, now, taken = Bucket.full(rate, 0.0), 0.0, 0
    for gap in gaps:
        now += gap
        taken += bucket.take(now) == 0.0
    assert taken <= rate + rate * now + 1e-6
