"""The `ferry` CLI end to end against a real broker: what a user types, sees and gets back."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from testsupport.ports import free_port

pytestmark = pytest.mark.functional

FERRY = shutil.which("ferry", path=str(Path(sys.executable).parent)) or "ferry"


def ferry(url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FERRY_BROKER_URL": url}
    env.pop("FERRY_BROKER_TOKEN", None)
    return subprocess.run(
        [FERRY, *args], input=stdin, capture_output=True, text=True, env=env, timeout=120
    )


def ok(url: str, *args: str, stdin: str | None = None) -> str:
    done = ferry(url, *args, stdin=stdin)
    assert done.returncode == 0, f"ferry {' '.join(args)} failed: {done.stderr}"
    return done.stdout


@pytest.fixture
def q() -> str:
    return f"q-{uuid.uuid4().hex[:12]}"


def test_create_publish_a_file_consume_and_inspect(broker: Any, q: str, tmp_path: Path) -> None:
    url = broker.url
    ok(url, "queue", "create", q, "--visibility-timeout-ms", "60000")
    ok(url, "group", "create", q, "workers")
    lines = [json.dumps({"n": n}, separators=(",", ":")) for n in range(2000)]
    lines += ["plain text", "42", '["a",1]']
    data = tmp_path / "in.jsonl"
    data.write_text("\n".join(lines) + "\n\n")  # a blank line is not a message

    published = ok(url, "publish", q, "--file", str(data), "--batch-size", "100", "--progress")
    assert f"published 2,003 messages to {q}" in published

    table = ok(url, "queue", "list")
    header, *rows = table.splitlines()
    assert header.split()[:3] == ["QUEUE", "MESSAGES", "PUBLISHED"]
    assert [r.split()[:3] for r in rows if r.startswith(q)] == [[q, "2,003", "2,003"]]
    assert "READY" in ok(url, "group", "stats", q, "workers")
    stats = json.loads(ok(url, "queue", "stats", q, "--json"))
    assert stats["messages"] == 2003 and stats["groups"][0]["depth"] == 2003

    out = ok(url, "consume", q, "workers", "--max", "2003")
    assert out.splitlines() == lines  # bodies printed as they were published
    group = json.loads(ok(url, "--json", "group", "stats", q, "workers"))
    assert (group["lag"], group["acked_total"]) == (0, 2003)

    assert ok(url, "group", "delete", q, "workers") == f"group workers on {q} deleted\n"
    assert ferry(url, "group", "stats", q, "workers").returncode == 1
    assert ok(url, "queue", "delete", q) == f"queue {q} deleted\n"
    gone = ferry(url, "queue", "delete", q)
    assert gone.returncode == 1 and "queue_not_found" in gone.stderr


def test_publish_from_stdin_and_peek_without_acking(broker: Any, q: str) -> None:
    url = broker.url
    ok(url, "queue", "create", q)
    ok(url, "group", "create", q, "workers")
    done = ferry(url, "publish", q, "--json", stdin="a\nb\nc\n")
    assert done.returncode == 0 and json.loads(done.stdout)["published"] == 3

    peeked = ok(url, "consume", q, "workers", "--no-ack", "--max", "3", "--json")
    assert [json.loads(line)["body"] for line in peeked.splitlines()] == ["a", "b", "c"]
    # Handed back, not acked: a second consumer gets them again.
    again = ok(url, "consume", q, "workers", "--max", "3", "--mode", "poll")
    assert again.splitlines() == ["a", "b", "c"]
    assert json.loads(ok(url, "group", "stats", q, "workers", "--json"))["lag"] == 0


def test_dead_letters_list_and_redrive(broker: Any, q: str) -> None:
    url = broker.url
    ok(url, "queue", "create", q, "--max-deliveries", "1")
    ok(url, "group", "create", q, "workers")
    ok(url, "publish", q, stdin='{"order": 1}\n{"order": 2}\n')
    ok(url, "consume", q, "workers", "--no-ack", "--max", "2")  # one delivery each: dead

    listing = ok(url, "dead", "list", q, "workers")
    assert listing.splitlines()[0].split() == ["ID", "DELIVERIES", "DEAD", "REASON", "BODY"]
    assert '{"order":1}' in listing and '{"order":2}' in listing
    dead = json.loads(ok(url, "dead", "list", q, "workers", "--json"))["messages"]
    first_id = dead[0]["id"]
    shown = ok(url, "message", q, first_id)
    assert "dead" in shown

    assert "redrove 1 dead letters" in ok(url, "dead", "redrive", q, "workers", first_id)
    assert "redrove 1 dead letters" in ok(url, "dead", "redrive", q, "workers")
    assert ok(url, "dead", "list", q, "workers") == "no dead letters\n"
    assert sorted(ok(url, "consume", q, "workers", "--max", "2").splitlines()) == [
        '{"order":1}',
        '{"order":2}',
    ]


def test_message_priority_change(broker: Any, q: str) -> None:
    url = broker.url
    ok(url, "queue", "create", q)
    ok(url, "group", "create", q, "workers")
    ok(url, "publish", q, stdin="a\nb\nc\n")
    peeked = ok(url, "consume", q, "workers", "--no-ack", "--max", "3", "--json")
    last = json.loads(peeked.splitlines()[-1])["id"]

    shown = json.loads(ok(url, "message", q, last, "--priority", "9", "--json"))
    assert shown["priority"] == 9
    assert ok(url, "consume", q, "workers", "--max", "3").splitlines() == ["c", "a", "b"]
    bad = ferry(url, "message", q, last, "--priority", "10")
    assert bad.returncode != 0 and "must be 0-9" in bad.stderr


def test_browse_cancel_and_purge(broker: Any, q: str) -> None:
    url = broker.url
    ok(url, "queue", "create", q)
    ok(url, "group", "create", q, "workers")
    ok(url, "publish", q, "--key", "k1", stdin="a\nb\n")
    ok(url, "publish", q, "--key", "k2", "--priority", "5", stdin="c\nd\n")
    table = ok(url, "browse", q, "--limit", "2")
    header, *rows, blank, more = table.splitlines()
    assert header.split()[:4] == ["ID", "PUBLISHED", "PRIORITY", "KEY"]
    assert [r.split()[-1] for r in rows] == ["a", "b"] and blank == ""
    assert more.startswith("more: --cursor ")
    rest = ok(url, "browse", q, "--limit", "2", "--cursor", more.split()[-1])
    assert [r.split()[-1] for r in rest.splitlines()[1:]] == ["c", "d"]
    page = json.loads(ok(url, "browse", q, "--group", "workers", "--state", "ready",
                         "--key", "k2", "--json"))
    assert [m["body"] for m in page["messages"]] == ["c", "d"]
    assert "no matching messages" in ok(url, "browse", q, "--priority", "9")

    ids = [m["id"] for m in json.loads(ok(url, "browse", q, "--json"))["messages"]]
    assert ok(url, "cancel", q, ids[0], ids[1]).strip() == f"cancelled 2 messages in {q}"
    refused = ferry(url, "purge", q, "workers")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert ok(url, "purge", q, "workers", "--yes").strip() == (
        f"purged 2 ready messages of {q}/workers")
    assert json.loads(ok(url, "browse", q, "--json"))["messages"] == []

    again = ferry(url, "cancel", q, ids[0])
    assert again.returncode == 1 and "message_not_found" in again.stderr
    no_group = ferry(url, "browse", q, "--state", "ready")
    assert no_group.returncode == 2 and "--state needs --group" in no_group.stderr
    bad_state = ferry(url, "browse", q, "--group", "workers", "--state", "gone")
    assert bad_state.returncode == 2 and "invalid choice" in bad_state.stderr
    for cmd in ("browse", "cancel", "purge"):
        assert ok(url, cmd, "--help").startswith("usage: ferry " + cmd)


def test_failures_exit_non_zero_with_a_clear_message(broker: Any, q: str, tmp_path: Path) -> None:
    url = broker.url
    missing = ferry(url, "queue", "stats", q)
    assert missing.returncode == 1
    assert f"ferry: error: queue {q!r}" in missing.stderr and "queue_not_found" in missing.stderr
    assert missing.stdout == ""

    published = ferry(url, "publish", q, stdin="x\n")
    assert published.returncode == 1 and "queue_not_found" in published.stderr

    bad_name = ferry(url, "queue", "create", "Bad_Name")
    assert bad_name.returncode == 1 and "invalid_name" in bad_name.stderr

    ok(url, "queue", "create", q)
    no_file = ferry(url, "publish", q, "--file", str(tmp_path / "nope.jsonl"))
    assert no_file.returncode == 1 and "No such file" in no_file.stderr

    usage = ferry(url, "consume", q)
    assert usage.returncode == 2 and "required: group" in usage.stderr

    down = ferry(f"http://127.0.0.1:{free_port()}", "queue", "list", "--retries", "0")
    assert down.returncode == 3
    assert "unreachable" in down.stderr and "is a broker running" in down.stderr


def test_group_create_with_a_header_filter(broker: Any, q: str) -> None:
    url = broker.url
    ok(url, "queue", "create", q)
    ok(url, "group", "create", q, "eu", "--match", "type=order", "--prefix", "region=eu-")
    ok(url, "publish", q, "--header", "type=order", "--header", "region=eu-west", stdin="yes\n")
    ok(url, "publish", q, "--header", "type=order", "--header", "region=us", stdin="no\n")
    ok(url, "publish", q, stdin="none\n")
    group = json.loads(ok(url, "--json", "group", "stats", q, "eu"))
    assert group["settings"]["filter"] == {"match": {"type": "order"},
                                           "prefix": {"region": "eu-"}}
    assert (group["lag"], group["filtered_total"]) == (1, 2)
    assert ok(url, "consume", q, "eu", "--max", "1").splitlines() == ["yes"]
    bad = ferry(url, "group", "create", q, "eu", "--match", "=order")
    assert bad.returncode == 2 and "expected NAME=VALUE" in bad.stderr
    long = ferry(url, "group", "create", q, "eu", "--prefix", "region=" + "x" * 1025)
    assert long.returncode != 0 and "1024" in long.stderr
