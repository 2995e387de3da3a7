"""ferry.kit: one log schema, one flag convention with deprecated aliases, one health shape."""

from __future__ import annotations

import argparse
import json
import logging

import pytest

from ferry.kit import config
from ferry.kit.logs import JsonFormatter

pytestmark = pytest.mark.unit


def test_a_log_line_is_one_json_object_with_the_extra_fields_kept() -> None:
    record = logging.makeLogRecord({"name": "ferry.x", "levelno": logging.INFO,
                                    "levelname": "INFO", "msg": "serving %s", "args": ("now",),
                                    "port": 7070, "queues": ["a"]})
    line = json.loads(JsonFormatter("ferry-broker").format(record))
    assert line["ts"].endswith("Z")
    assert {k: v for k, v in line.items() if k != "ts"} == {
        "level": "info", "service": "ferry-broker", "logger": "ferry.x", "msg": "serving now",
        "port": 7070, "queues": ["a"]}


def test_a_renamed_flag_works_under_its_old_name_and_says_it_goes(
        capsys: pytest.CaptureFixture[str]) -> None:
    p = argparse.ArgumentParser(prog="ferry-collector")
    config.add_broker_url(p, "--broker", required=True)
    assert p.parse_args(["--broker-url", "http://a:1"]).broker_url == "http://a:1"
    assert capsys.readouterr().err == ""
    assert p.parse_args(["--broker", "http://b:2"]).broker_url == "http://b:2"
    assert capsys.readouterr().err == (
        "ferry-collector: --broker is deprecated and goes in the next release; "
        "use --broker-url\n")


def test_the_new_variable_wins_over_the_old_one_which_still_works(
        capsys: pytest.CaptureFixture[str]) -> None:
    both = {"FERRY_STORAGE": "new", "FERRY_DATABASE_URL": "old"}
    assert config.env("FERRY_STORAGE", old="FERRY_DATABASE_URL", environ=both) == "new"
    only_old = {"FERRY_DATABASE_URL": "old"}
    assert config.env("FERRY_STORAGE", "d", old="FERRY_DATABASE_URL", environ=only_old) == "old"
    assert "FERRY_DATABASE_URL is deprecated" in capsys.readouterr().err
    assert config.env("FERRY_STORAGE", "d", old="FERRY_DATABASE_URL", environ={}) == "d"


@pytest.mark.parametrize(("parse", "text", "problem"), [
    (config.positive_int, "0", "must be at least 1, got 0"),
    (config.non_negative_int, "x", "not a whole number: 'x'"),
    (config.port_number, "70000", "must be 0-65535, got 70000"),
    (config.positive_float, "nan", "must be a positive number, got nan"),
])
def test_validators_name_the_problem(parse: object, text: str, problem: str) -> None:
    assert callable(parse)
    with pytest.raises(argparse.ArgumentTypeError, match=problem):
        parse(text)
