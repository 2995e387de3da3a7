"""The image's build stage can build Ferry from exactly the context Docker would send.

No Docker engine runs here, so this replays the build stage: the context is
filtered through .dockerignore the way Docker filters it, the build stage's
COPY sources must all be in it, and a wheel built from it must carry every
console script the runtime stage is meant to run.
"""

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from configparser import ConfigParser
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.functional


def _pattern(glob: str) -> re.Pattern[str]:
    """Docker's .dockerignore glob: `**` spans directories, `*` and `?` do not."""
    out, i = "", 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif glob.startswith("**", i):
            out, i = out + ".*", i + 2
        elif glob[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif glob[i] == "?":
            out, i = out + "[^/]", i + 1
        elif glob[i] == "[":
            end = glob.index("]", i)
            out, i = out + glob[i : end + 1], end + 1
        else:
            out, i = out + re.escape(glob[i]), i + 1
    return re.compile(out + r"\Z")


def _rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        glob = line.lstrip("!").strip("/")
        rules.append((negated, _pattern(glob)))
    return rules


def _excluded(rel: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Last matching rule wins; a rule matching a parent folder covers its files."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for negated, pattern in rules:
        if any(pattern.match(p) for p in prefixes):
            excluded = not negated
    return excluded


def _context(dest: Path) -> list[str]:
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()
    rules = _rules()
    kept = [rel for rel in tracked if (ROOT / rel).is_file() and not _excluded(rel, rules)]
    for rel in kept:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dest / rel)
    return kept


def _copies() -> list[tuple[list[str], str]]:
    """(sources, destination) of every COPY that reads the build context."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            out.append((words[1:-1], words[-1]))
    return out


def _context_copies() -> list[str]:
    return [source for sources, _ in _copies() for source in sources]


def test_dockerignore_keeps_secrets_and_caches_out() -> None:
    rules = _rules()
    for rel in [".git/config", ".venv/bin/python", ".cache/envtest/kube-apiserver",
                "tests/conftest.py", "broker/__pycache__/core.cpython-311.pyc", "broker/x.db"]:
        assert _excluded(rel, rules), rel
    assert not _excluded("broker/py.typed", rules)


def test_build_stage_builds_a_wheel_with_every_console_script(tmp_path: Path) -> None:
    context = tmp_path / "context"
    kept = _context(context)
    for source in _context_copies():
        assert (context / source).exists(), f"COPY {source}: not in the build context"
    assert not any(rel.startswith("tests/") for rel in kept)

    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
         "--wheel-dir", str(tmp_path / "wheels"), str(context)],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    [wheel] = (tmp_path / "wheels").glob("ferry-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        [entry_file] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        entry_points = ConfigParser()
        entry_points.read_string(zf.read(entry_file).decode())

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert dict(entry_points["console_scripts"]) == scripts
    for target in scripts.values():
        module = target.split(":")[0].replace(".", "/")
        assert f"{module}.py" in names or f"{module}/__init__.py" in names, target


def test_the_example_pipeline_reads_a_file_the_image_holds() -> None:
    pipeline = yaml.safe_load((ROOT / "examples" / "telemetrypipeline.yaml").read_text())
    path = pipeline["spec"]["streamer"]["source"]["path"]
    in_image = {
        (dest.rstrip("/") + "/" + Path(src).name) if dest.endswith("/") else dest: src
        for sources, dest in _copies() for src in sources
    }
    assert path in in_image, f"{path} is not copied into the image"
    assert (ROOT / in_image[path]).is_file()
