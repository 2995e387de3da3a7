"""The package layout works: ferry.* imports, console scripts run, stdlib `operator` is intact."""

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.unit


@pytest.mark.parametrize("name", ["ferry.broker", "ferry.operator", "ferry.telemetry", "ferry.kit"])
def test_namespace_imports(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__name__ == name


def test_stdlib_operator_is_not_shadowed_from_repo_root() -> None:
    assert not (ROOT / "operator" / "__init__.py").exists()
    out = subprocess.run(
        [sys.executable, "-c", "import operator; print(operator.itemgetter(1)([0, 42]))"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip() == "42"


@pytest.mark.parametrize("script", ["ferry", "ferry-broker", "ferry-operator"])
def test_console_scripts_have_help(script: str) -> None:
    exe = shutil.which(script, path=str(Path(sys.executable).parent))
    assert exe, f"{script} is not installed next to {sys.executable}"
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True)
    assert "usage:" in out.stdout


@pytest.mark.parametrize("module", ["ferry.broker", "ferry.operator"])
def test_python_dash_m_has_help(module: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, check=True
    )
    assert "usage:" in out.stdout
