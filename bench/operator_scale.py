"""`python -m bench.operator_scale`: N Queues created at once, timed until every one is Ready.

The figure measures the operator, not N broker processes: a real API server (the envtest
control plane, built once by `make envtest`) and one real ferry-broker, which every Queue
reaches through the operator's --broker-url (each Queue still gets its children, its token
Secret and its queue on that broker). The operator runs with its default intervals. Prints
the seconds to all-Ready (and those the `kubectl create` itself took), the machine's load
average, the CPU seconds each server used meanwhile (operator, broker, kube-apiserver, etcd,
kube-controller-manager), and the API requests the run cost
(`apiserver_request_total` before and after). Not part of `make test`: a time on a shared
machine is a report, never an assertion.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from testsupport.ports import free_port
from testsupport.waiting import answers, eventually

from bench.processes import ServerProcess, tree_cpu_seconds
from kubeplane import ControlPlane, ControlPlaneError, start, stop
from kubeplane.planes import status

ROOT = Path(__file__).resolve().parents[1]

NAMESPACE = "scale"


def _requests(plane: ControlPlane) -> float:
    text = plane.kubectl("get", "--raw", "/metrics").stdout
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("apiserver_request_total{"))


def _ready(plane: ControlPlane) -> int | None:
    """How many Queues are Ready; None when the API server did not answer the listing in
    time (under the burst it may not: the run goes on)."""
    try:
        found = plane.kubectl_json("get", "queues", "-n", NAMESPACE)
    except ControlPlaneError as error:
        print(f"  (listing the Queues failed: {error})", flush=True)
        return None
    return sum(1 for q in found["items"]
               if any(c["type"] == "Ready" and c["status"] == "True"
                      for c in (q.get("status") or {}).get("conditions") or []))


def _cpu(plane_dir: Path, servers: list[ServerProcess]) -> dict[str, float]:
    """CPU seconds used so far by each server of the run: where the time goes."""
    pids = {**status(plane_dir), **{s.name: s.pid for s in servers}}
    return {name: tree_cpu_seconds(pid) for name, pid in pids.items()}


def _wait_http(url: str, server: ServerProcess, limit: float = 60) -> None:
    def up() -> bool:
        server.check_alive()
        return answers(url)

    eventually(up, f"{url} to answer", limit)


def run(count: int, timeout: float, work: Path) -> dict[str, float]:
    plane = start(work / "plane", die_with_parent=True)
    bin_dir = Path(sys.executable).parent
    broker_port, metrics_port = free_port(), free_port()
    broker = ServerProcess("ferry-broker", [
        str(bin_dir / "ferry-broker"), "--host", "127.0.0.1", "--port", str(broker_port),
        "--data-dir", str(work / "broker")], work / "broker.log")
    operator = ServerProcess("ferry-operator", [
        str(bin_dir / "ferry-operator"), "--kubeconfig", str(plane.kubeconfig), "--standalone",
        "--namespace", NAMESPACE, "--broker-url", f"http://127.0.0.1:{broker_port}",
        "--metrics-host", "127.0.0.1", "--metrics-port", str(metrics_port)],
        work / "operator.log")
    try:
        plane.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        plane.kubectl("wait", "--for=condition=Established", "--timeout=120s",
                      "crd/queues.ferry.dev")
        plane.kubectl("create", "namespace", NAMESPACE)
        broker.start()
        _wait_http(f"http://127.0.0.1:{broker_port}/healthz", broker)
        operator.start()
        _wait_http(f"http://127.0.0.1:{metrics_port}/healthz", operator)
        queues = {"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "ferry.dev/v1alpha1", "kind": "Queue",
             "metadata": {"name": f"q{i:04d}", "namespace": NAMESPACE}, "spec": {}}
            for i in range(count)]}
        before, cpu_before = _requests(plane), _cpu(work / "plane", [operator, broker])
        began = time.monotonic()
        plane.kubectl("create", "-f", "-", input=json.dumps(queues), timeout=timeout)
        # kubectl creates a List's items one request at a time: how long that alone took
        # tells the API server's share from the operator's.
        created = time.monotonic() - began
        ready = 0
        while ready < count and time.monotonic() - began < timeout:
            time.sleep(1)
            ready = _ready(plane) or ready
            print(f"  {time.monotonic() - began:6.1f}s  {ready}/{count} Ready", flush=True)
        seconds = time.monotonic() - began
        cpu = _cpu(work / "plane", [operator, broker])
        return {"queues": count, "ready": ready, "seconds": round(seconds, 1),
                "create_seconds": round(created, 1), "api_requests": _requests(plane) - before,
                "load_average_1m": os.getloadavg()[0],
                **{f"cpu_seconds_{name}": round(cpu[name] - cpu_before.get(name, 0.0), 1)
                   for name in cpu}}
    finally:
        asyncio.run(operator.stop(30))
        asyncio.run(broker.stop(30))
        stop(work / "plane")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.operator_scale", description=__doc__)
    p.add_argument("--queues", type=int, default=300, help="Queues created at once (300)")
    p.add_argument("--timeout", type=float, default=600, help="give up after (600 s)")
    args = p.parse_args(argv)
    if args.queues < 1:
        p.error("--queues must be at least 1")
    with tempfile.TemporaryDirectory(prefix="ferry-operator-scale-") as work:
        figures = run(args.queues, args.timeout, Path(work))
    print(json.dumps(figures))
    return 0 if figures["ready"] == figures["queues"] else 1


if __name__ == "__main__":
    sys.exit(main())
