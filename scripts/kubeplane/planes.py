"""Start and stop a control plane in a directory: etcd, kube-apiserver, kube-controller-manager.

Everything binds 127.0.0.1 on free ports. The directory holds all state:

    pki/          CAs, serving and client certificates, service-account signing keys
    etcd/         etcd's data (kept across stop/start, so a restarted plane keeps its objects)
    run/*.pid     one pidfile per server (its own process group)
    logs/*.log    each server's output
    kubeconfig    cluster-admin (a client certificate in group system:masters)
    plane.json    ports and versions, read back by `ControlPlane.load`
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from testsupport.processes import tail
from testsupport.waiting import GaveUpError, answers, eventually

from kubeplane import flags, kubeconfigs, pki, processes
from kubeplane.building import Binaries, Versions, find_kubectl, locate

# Stop order; start order is the reverse.
COMPONENTS = ("kube-controller-manager", "kube-apiserver", "etcd")
PORT_NAMES = ("etcd_client", "etcd_peer", "apiserver", "controller_manager")
READY_TIMEOUT = 300.0  # generous: a cold start on a loaded 2-core machine is slow
Progress = Callable[[str], None]
Flags = Callable[[Path, flags.PlanePaths, dict[str, int]], list[str]]  # a server's command line


class ControlPlaneError(RuntimeError):
    """The plane could not start (the message carries the failing server's log tail)."""


@dataclass(frozen=True)
class ControlPlane:
    """A running plane: where it lives, how to reach it, and kubectl bound to it."""

    directory: Path
    server: str
    ports: dict[str, int]
    versions: Versions

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig"

    @property
    def paths(self) -> flags.PlanePaths:
        return flags.PlanePaths(self.directory)

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this plane; with check=True a failure raises, showing stderr."""
        argv = [str(find_kubectl()), "--kubeconfig", str(self.kubeconfig), *args]
        result = subprocess.run(argv, input=input, capture_output=True, text=True,
                                timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise ControlPlaneError(f"kubectl {' '.join(args)} failed ({result.returncode}): "
                                    f"{result.stderr.strip()}")
        return result

    def wait_established(self, *crds: str, timeout: float = 120.0) -> None:
        """Until every CRD (by name) is Established. Polled rather than `kubectl wait
        --for=condition=Established`, which fails at once ("accessor error: <nil>") on a
        CRD the API server has not given status conditions yet."""
        path = '{.status.conditions[?(@.type=="Established")].status}'

        def established() -> bool:
            return all(self.kubectl("get", "crd", crd, "-o", f"jsonpath={path}",
                                    check=False).stdout.strip() == "True" for crd in crds)

        try:
            eventually(established, f"CRDs {', '.join(crds)} to be Established", timeout)
        except GaveUpError as e:
            raise ControlPlaneError(str(e)) from None

    def kubectl_json(self, *args: str) -> Any:
        """kubectl ... -o json, parsed."""
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    @classmethod
    def load(cls, directory: Path) -> ControlPlane:
        raw = json.loads((directory / "plane.json").read_text())
        return cls(directory=directory, server=raw["server"], ports=raw["ports"],
                   versions=Versions(**raw["versions"]))

    def save(self) -> None:
        raw = {"server": self.server, "ports": self.ports, "versions": asdict(self.versions)}
        (self.directory / "plane.json").write_text(json.dumps(raw, indent=2) + "\n")


def _free_ports(previous: dict[str, int]) -> dict[str, int]:
    # Reuse a restarted plane's ports when still free, so old kubeconfigs keep working.
    ports: dict[str, int] = {}
    holders: list[socket.socket] = []
    try:
        for name in PORT_NAMES:
            sock = socket.socket()
            holders.append(sock)
            try:
                sock.bind(("127.0.0.1", previous.get(name, 0)))
            except OSError:
                sock.bind(("127.0.0.1", 0))
            ports[name] = sock.getsockname()[1]
    finally:
        for sock in holders:
            sock.close()
    return ports


def _wait(what: str, server: processes.Running, probe: Callable[[], bool], deadline: float) -> None:
    def up() -> bool:
        if not processes.alive(server.pid):
            raise ControlPlaneError(f"{server.name} exited while {what}; "
                                    f"last lines of {server.log}:\n{tail(server.log, 25)}")
        return probe()

    try:
        eventually(up, what, max(0.0, deadline - time.monotonic()), interval=0.25)
    except GaveUpError:
        raise ControlPlaneError(f"timed out {what}; last lines of {server.log}:\n"
                                f"{tail(server.log, 25)}") from None


def _ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    # Longer than answers' default: a loaded API server can take seconds to reply.
    return answers(url, timeout=5, context=context)


def _admin_context(paths: flags.PlanePaths) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(paths.ca.cert))
    context.load_cert_chain(str(paths.admin.cert), str(paths.admin.key))
    return context


def _insecure_context() -> ssl.SSLContext:
    # Only for kube-controller-manager's /healthz: its serving cert is self-signed at start.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def make_pki(paths: flags.PlanePaths) -> None:
    ca = pki.make_ca(paths.ca, "ferry-envtest-ca")
    pki.issue(paths.apiserver, ca, "kube-apiserver", pki.Usage.SERVER, hosts=flags.APISERVER_HOSTS)
    pki.issue(paths.admin, ca, "ferry-admin", pki.Usage.CLIENT, organization="system:masters")
    pki.issue(paths.controller_manager, ca, "system:kube-controller-manager", pki.Usage.CLIENT)
    front_proxy = pki.make_ca(paths.front_proxy_ca, "ferry-envtest-front-proxy-ca")
    pki.issue(paths.front_proxy_client, front_proxy, flags.FRONT_PROXY_CLIENT, pki.Usage.CLIENT)
    pki.make_signing_key(paths.service_account_key, paths.service_account_pub)


def _launch(binaries: Binaries, paths: flags.PlanePaths, ports: dict[str, int],
            die_with_parent: bool, say: Progress) -> None:
    deadline = time.monotonic() + READY_TIMEOUT

    def spawn(name: str, argv: Flags) -> processes.Running:
        return processes.spawn(name, argv(binaries.bin_dir / name, paths, ports), paths.run,
                               paths.logs, die_with_parent=die_with_parent)

    etcd = spawn("etcd", flags.etcd)
    _wait("waiting for etcd to be healthy", etcd,
          lambda: _ok(f"http://127.0.0.1:{ports['etcd_client']}/health"), deadline)
    say(f"etcd {binaries.versions.etcd} healthy on 127.0.0.1:{ports['etcd_client']}")

    apiserver = spawn("kube-apiserver", flags.apiserver)
    admin = _admin_context(paths)
    base = f"https://127.0.0.1:{ports['apiserver']}"
    _wait("waiting for kube-apiserver /readyz", apiserver,
          lambda: _ok(f"{base}/readyz", admin), deadline)
    say(f"kube-apiserver {binaries.versions.kubernetes} ready at {base}")

    manager = spawn("kube-controller-manager", flags.controller_manager)
    insecure = _insecure_context()
    _wait("waiting for kube-controller-manager /healthz", manager,
          lambda: _ok(f"https://127.0.0.1:{ports['controller_manager']}/healthz", insecure),
          deadline)
    # The serviceaccount controller creating `default` shows the controllers really run.
    _wait("waiting for the controllers to create the default ServiceAccount", manager,
          lambda: _ok(f"{base}/api/v1/namespaces/default/serviceaccounts/default", admin),
          deadline)
    say("kube-controller-manager running its controllers")


def start(directory: Path, *, binaries: Binaries | None = None, die_with_parent: bool = False,
          progress: Progress | None = None) -> ControlPlane:
    """Start a plane in `directory` (created if needed) and wait until it serves.

    die_with_parent=True makes the kernel kill the servers when the calling process
    dies (the pytest fixture); the CLI leaves them running detached instead.
    """
    say = progress or (lambda line: None)
    directory = directory.resolve()
    binaries = binaries or locate()
    if binaries.missing():
        missing = ", ".join(map(str, binaries.missing()))
        raise ControlPlaneError(f"envtest binaries missing ({missing}): run `make envtest` first")
    paths = flags.PlanePaths(directory)
    if processes.running(paths.run):
        raise ControlPlaneError(f"a control plane is already running in {directory}; stop it first")
    make_pki(paths)
    previous = ControlPlane.load(directory).ports if (directory / "plane.json").is_file() else {}
    ports = _free_ports(previous)
    plane = ControlPlane(directory=directory, server=f"https://127.0.0.1:{ports['apiserver']}",
                         ports=ports, versions=binaries.versions)
    kubeconfigs.write(plane.kubeconfig, plane.server, paths.ca, paths.admin, user="ferry-admin")
    kubeconfigs.write(paths.controller_manager_kubeconfig, plane.server, paths.ca,
                      paths.controller_manager, user="system:kube-controller-manager")
    plane.save()
    try:
        _launch(binaries, paths, ports, die_with_parent, say)
    except BaseException:
        stop(directory)
        raise
    return plane


def stop(directory: Path) -> list[str]:
    """Stop every server of the plane in `directory`; returns the names that were running."""
    run = flags.PlanePaths(directory.resolve()).run
    return [name for name in COMPONENTS if processes.stop(run, name)]


def status(directory: Path) -> dict[str, int]:
    """Name -> pid of the plane's servers that are running."""
    return processes.running(flags.PlanePaths(directory.resolve()).run)
