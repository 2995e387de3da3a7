"""Go-built tools (the control plane, Argo CD, kustomize, kstatus) build once and are reused
until their module folder (go.mod, go.sum, *.go) or the build flags change."""

import json
from pathlib import Path

import pytest

from kubeplane import building, tools

pytestmark = pytest.mark.unit


@pytest.fixture
def no_go(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache and no Go toolchain: any attempt to build fails loudly."""
    monkeypatch.setenv("FERRY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(building, "GO_FALLBACK", str(tmp_path / "empty"))
    return tmp_path / "cache"


def _fake_build(tool: building.GoTool, fingerprint: str) -> None:
    tool.bin_dir().mkdir(parents=True)
    for name in tool.packages:
        tool.binary(name).write_text("#!/bin/sh\n")
    for dest in tool.assets.values():
        (tool.root() / dest).mkdir()
    (tool.root() / building.STAMP).write_text(json.dumps({"fingerprint": fingerprint}))


def test_binaries_live_under_ferry_cache_by_kubernetes_version(no_go: Path) -> None:
    binaries = building.locate()
    assert binaries.root == no_go / "envtest" / binaries.versions.kubernetes
    assert binaries.versions.kubernetes.startswith("v1.")
    assert binaries.versions.etcd.startswith("v3.")


def test_an_empty_cache_needs_a_build(no_go: Path) -> None:
    with pytest.raises(building.BuildError, match="Go toolchain"):
        building.ensure_built(progress=lambda line: None)


def test_a_matching_build_is_reused_without_go(no_go: Path) -> None:
    _fake_build(building.ENVTEST, building.ENVTEST.fingerprint())
    assert building.ensure_built(progress=lambda line: None) == building.locate()


def test_a_build_from_another_go_mod_is_rebuilt(no_go: Path) -> None:
    _fake_build(building.ENVTEST, "from-an-older-go.mod")
    with pytest.raises(building.BuildError, match="Go toolchain"):
        building.ensure_built(progress=lambda line: None)


@pytest.mark.parametrize("name", sorted(tools.TOOLS))
def test_each_peer_tool_has_its_own_module_and_cache_key(no_go: Path, name: str) -> None:
    tool = tools.TOOLS[name]
    assert tool.go_mod.is_file() and tool.go_mod.parent != building.GO_MODULE
    assert tool.root() == no_go / name / tool.version()
    with pytest.raises(building.BuildError, match=f"make tools.*{name}"):
        building.located(tool)
    _fake_build(tool, tool.fingerprint())
    assert building.ensure_tool(tool, progress=lambda line: None) == tool.bin_dir()
    assert building.located(tool) == tool.bin_dir()


def test_a_changed_main_go_rebuilds(tmp_path: Path, no_go: Path) -> None:
    module = tmp_path / "module"
    module.mkdir()
    (module / "go.mod").write_text("module x\n\ngo 1.24.0\n\nrequire example.com/y v1.2.3\n")
    (module / "go.sum").write_text("")
    (module / "main.go").write_text("package main\n")
    tool = building.GoTool(name="x", module_dir=module, key_module="example.com/y",
                           packages={"x": "x"})
    _fake_build(tool, tool.fingerprint())
    assert building.tool_is_current(tool)
    (module / "main.go").write_text("package main\n\nfunc main() {}\n")
    assert not building.tool_is_current(tool)


def test_argocd_is_built_with_the_toolchain_its_go_mod_names() -> None:
    # The machine's Go runs with GOTOOLCHAIN=local and would ignore go.mod's toolchain line.
    assert building._environment(tools.ARGOCD)["GOTOOLCHAIN"].startswith("go1.27")
