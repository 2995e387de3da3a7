"""`make envtest` builds once and reuses the build until go.mod, go.sum or the flags change."""

import json
from pathlib import Path

import pytest

from kubeplane import building

pytestmark = pytest.mark.unit


@pytest.fixture
def no_go(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache and no Go toolchain: any attempt to build fails loudly."""
    monkeypatch.setenv("FERRY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(building, "GO_FALLBACK", str(tmp_path / "empty"))
    return tmp_path / "cache"


def _fake_build(binaries: building.Binaries, fingerprint: str) -> None:
    binaries.bin_dir.mkdir(parents=True)
    for name in building.PACKAGES:
        (binaries.bin_dir / name).write_text("#!/bin/sh\n")
    (binaries.root / building.STAMP).write_text(json.dumps({"fingerprint": fingerprint}))


def test_binaries_live_under_ferry_cache_by_kubernetes_version(no_go: Path) -> None:
    binaries = building.locate()
    assert binaries.root == no_go / "envtest" / binaries.versions.kubernetes
    assert binaries.versions.kubernetes.startswith("v1.")
    assert binaries.versions.etcd.startswith("v3.")


def test_an_empty_cache_needs_a_build(no_go: Path) -> None:
    with pytest.raises(building.BuildError, match="Go toolchain"):
        building.ensure_built(progress=lambda line: None)


def test_a_matching_build_is_reused_without_go(no_go: Path) -> None:
    binaries = building.locate()
    _fake_build(binaries, building.fingerprint(binaries.versions))
    assert building.ensure_built(progress=lambda line: None) == binaries


def test_a_build_from_another_go_mod_is_rebuilt(no_go: Path) -> None:
    binaries = building.locate()
    _fake_build(binaries, "from-an-older-go.mod")
    with pytest.raises(building.BuildError, match="Go toolchain"):
        building.ensure_built(progress=lambda line: None)
