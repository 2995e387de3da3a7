"""Map broker/, operator/, telemetry/ and kit/ onto the ferry.* namespace.

Only the package list is computed here (so a new subpackage needs no edit);
everything else lives in pyproject.toml.
"""

from pathlib import Path

from setuptools import setup

ROOTS = {"broker": "ferry.broker", "operator": "ferry.operator", "telemetry": "ferry.telemetry",
         "kit": "ferry.kit"}


def _packages() -> dict[str, str]:
    found: dict[str, str] = {}
    for folder, name in ROOTS.items():
        for d in [Path(folder), *sorted(p for p in Path(folder).rglob("*") if p.is_dir())]:
            if "__pycache__" in d.parts or (not any(d.glob("*.py")) and d != Path(folder)):
                continue
            rel = d.relative_to(folder).parts
            found[".".join((name, *rel))] = str(d)
    return found


PACKAGES = _packages()
setup(packages=sorted(PACKAGES), package_dir=PACKAGES)
