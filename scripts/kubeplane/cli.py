"""`scripts/controlplane`: build, start, stop and inspect a local control plane."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

from kubeplane import building, planes, tools
from kubeplane.pki import PkiError


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _first_line(argv: list[str]) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    lines = (result.stdout or result.stderr).strip().splitlines()
    return lines[0] if lines else f"(no output, exit {result.returncode})"


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def versions(binaries: building.Binaries) -> list[str]:
    """One line per binary: what it says its version is, and where it is."""
    rows = [(name, [str(binaries.bin_dir / name), "--version"], binaries.bin_dir / name)
            for name in building.PACKAGES]
    kubectl = building.find_kubectl()
    rows.append(("kubectl", [str(kubectl), "version", "--client"], kubectl))
    lines = [f"{name:<24} {_first_line(argv):<28} {path}" for name, argv, path in rows]
    info = building.build_info(building.ENVTEST)
    lines.append(f"cache {binaries.root}: {_size(binaries.root) / 2**20:.0f} MiB; "
                 f"built {info.get('built_at', '?')} in {info.get('build_seconds', '?')}s")
    return lines


def _build(_: argparse.Namespace) -> int:
    binaries = building.ensure_built(_say)
    print("\n".join(versions(binaries)))
    return 0


def _tools(args: argparse.Namespace) -> int:
    for name in args.names:
        tool = tools.TOOLS[name]
        bin_dir = building.ensure_tool(tool, _say)
        info = building.build_info(tool)
        print(f"{name:<12} {tool.version():<10} {bin_dir}  "
              f"(built {info.get('built_at', '?')} in {info.get('build_seconds', '?')}s)")
    return 0


def _start(args: argparse.Namespace) -> int:
    binaries = building.ensure_built(_say)
    plane = planes.start(args.directory, binaries=binaries, progress=_say)
    print(f"control plane running: {plane.server}")
    print(f"logs in {plane.directory / 'logs'}")
    print(f"stop it with: scripts/controlplane stop {args.directory}")
    print(f"export KUBECONFIG={plane.kubeconfig}")
    return 0


def _stop(args: argparse.Namespace) -> int:
    stopped = planes.stop(args.directory)
    if stopped:
        print(f"stopped {', '.join(stopped)}")
    else:
        print(f"nothing was running in {args.directory}")
    return 0


def _status(args: argparse.Namespace) -> int:
    running = planes.status(args.directory)
    for name in reversed(planes.COMPONENTS):
        state = f"running, pid {running[name]}" if name in running else "stopped"
        print(f"{name:<24} {state}")
    return 0 if len(running) == len(planes.COMPONENTS) else 1


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="scripts/controlplane",
        description="A real Kubernetes control plane (etcd, kube-apiserver, "
                    "kube-controller-manager) on 127.0.0.1, built from source once.")
    sub = top.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build the binaries into the cache once; print versions",
                           description="Build into ${FERRY_CACHE:-.cache}/envtest/<version>/ "
                                       "unless already there; print the versions.")
    build.set_defaults(run=_build)
    names = ", ".join(sorted(tools.TOOLS))
    peers = sub.add_parser("tools", help=f"build peer tools ({names}) once",
                           description="Build each named tool from its Go module folder "
                                       "(tests/envtest/tools/NAME/) into "
                                       "${FERRY_CACHE:-.cache}/NAME/<version>/bin/ unless "
                                       "already there; print where.")
    peers.add_argument("names", nargs="+", choices=sorted(tools.TOOLS), metavar="NAME",
                       help=f"one of: {names}")
    peers.set_defaults(run=_tools)
    for name, run, text in (
        ("start", _start, "start a plane in DIR (built first if needed); wait until it is ready"),
        ("stop", _stop, "stop the plane in DIR; no process is left behind"),
        ("status", _status, "show which of DIR's servers run (exit 1 unless all do)"),
    ):
        command = sub.add_parser(name, help=text, description=text)
        command.add_argument("directory", type=Path, metavar="DIR",
                             help="the plane's directory (certificates, data, logs, kubeconfig)")
        command.set_defaults(run=run)
    return top


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # SystemExit unwinds like Ctrl-C: a half-started plane is stopped, a build's
    # `go` child is killed and its scratch folder removed.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        code: int = args.run(args)
    except (building.BuildError, planes.ControlPlaneError, PkiError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return code
