"""The generator reproduces the committed samples, and the commands explain themselves."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which(argv[0], path=str(BIN))
    assert exe, f"{argv[0]} is not installed next to {sys.executable}"
    return subprocess.run([exe, *argv[1:]], capture_output=True, text=True)


@pytest.mark.parametrize(
    ("file", "args"),
    [
        ("dcgm_sample.csv", []),
        ("dcgm_bad_rows.csv", ["--hosts", "2", "--scrapes", "2", "--bad-rows"]),
    ],
)
def test_committed_samples_are_what_the_generator_writes(file: str, args: list[str]) -> None:
    out = _run("ferry-telemetry", "generate", *args)
    assert out.returncode == 0, out.stderr
    assert out.stdout == (ROOT / "examples" / "data" / file).read_text()
    assert "wrote" in out.stderr


def test_generator_rejects_bad_arguments_clearly() -> None:
    out = _run("ferry-telemetry", "generate", "--start", "2026-11-23T10:00:00")
    assert out.returncode == 2
    assert "lacks a timezone" in out.stderr
    out = _run("ferry-telemetry", "generate", "--hosts", "0")
    assert out.returncode == 2
    assert "must be at least 1" in out.stderr


@pytest.mark.parametrize(
    "script", ["ferry-telemetry", "ferry-api", "ferry-streamer", "ferry-collector"]
)
def test_telemetry_commands_have_help(script: str) -> None:
    out = _run(script, "--help")
    assert out.returncode == 0
    assert "usage:" in out.stdout
