"""`ferry` argument parsing: options anywhere, environment fallbacks, clear usage errors."""

import pytest

from ferry.broker.cli.args import build_parser, connection, parse_args
from ferry.kit.config import DEFAULT_BROKER_URL

pytestmark = pytest.mark.unit


def test_connection_options_work_before_or_after_the_command() -> None:
    parser = build_parser()
    before = parser.parse_args(["--broker-url", "http://a:1", "--json", "queue", "list"])
    after = parser.parse_args(["queue", "list", "--broker-url", "http://a:1", "--json"])
    for args in (before, after):
        assert args.url == "http://a:1"
        assert args.json is True
        assert (args.command, args.action) == ("queue", "list")


def test_flags_win_over_the_environment_which_wins_over_defaults() -> None:
    env = {"FERRY_BROKER_URL": "http://env:2", "FERRY_BROKER_TOKEN": "t0k"}
    defaults = connection(parse_args(["queue", "list"]), {})
    assert (defaults.url, defaults.token, defaults.retries) == (DEFAULT_BROKER_URL, None, 2)
    from_env = connection(parse_args(["queue", "list"]), env)
    assert (from_env.url, from_env.token) == ("http://env:2", "t0k")
    flag = connection(parse_args(["queue", "list", "--broker-url", "http://f:3"]), env)
    assert flag.url == "http://f:3"


def test_the_old_names_still_work_for_one_release_and_say_so(
        capsys: pytest.CaptureFixture[str]) -> None:
    old_env = {"FERRY_URL": "http://env:2", "FERRY_TOKEN": "t0k"}
    from_env = connection(parse_args(["queue", "list"]), old_env)
    assert (from_env.url, from_env.token) == ("http://env:2", "t0k")
    flags = parse_args(["queue", "list", "--url", "http://f:3", "--token", "x"])
    assert (flags.url, flags.token) == ("http://f:3", "x")
    err = capsys.readouterr().err
    for old, new in (("FERRY_URL", "FERRY_BROKER_URL"), ("FERRY_TOKEN", "FERRY_BROKER_TOKEN"),
                     ("--url", "--broker-url"), ("--token", "--broker-token")):
        assert f"{old} is deprecated and goes in the next release; use {new}" in err


def test_every_command_sees_the_common_options_even_when_not_given() -> None:
    args = parse_args(["consume", "q", "g"])
    assert (args.json, args.url, args.timeout) == (False, None, 30.0)


def test_publish_options_are_parsed() -> None:
    args = build_parser().parse_args(
        [
            "publish",
            "jobs",
            "--file",
            "in.jsonl",
            "--header",
            "a=b=c",
            "--header",
            "x=",
            "--priority",
            "9",
            "--batch-size",
            "100",
            "--no-progress",
        ]
    )
    assert args.queue == "jobs" and args.file == "in.jsonl"
    assert args.header == [("a", "b=c"), ("x", "")]
    assert (args.priority, args.batch_size, args.progress) == (9, 100, False)


def test_consume_defaults_to_acking_forever_over_the_stream() -> None:
    args = build_parser().parse_args(["consume", "jobs", "workers"])
    assert (args.ack, args.max, args.idle, args.mode) == (True, None, None, "stream")
    args = build_parser().parse_args(["consume", "jobs", "workers", "--no-ack", "--max", "3"])
    assert (args.ack, args.max) == (False, 3)


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["publish", "q", "--priority", "10"], "must be 0-9"),
        (["publish", "q", "--header", "novalue"], "expected NAME=VALUE"),
        (["consume", "q", "g", "--max", "0"], "must be at least 1"),
        (["consume", "q", "g", "--max", "many"], "not a whole number"),
        (["queue", "create"], "required: queue"),
        (["queue"], "required: ACTION"),
        (["dead", "list", "q"], "required: group"),
        ([], "required: COMMAND"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(argv)
    assert exit_.value.code == 2
    assert complaint in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["queue"],
        ["queue", "create"],
        ["group", "stats"],
        ["publish"],
        ["consume"],
        ["dead", "redrive"],
        ["message"],
    ],
)
def test_every_command_has_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*argv, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("usage: ferry")
