"""`python -m bench.operator_scale`: how fast Queues become Ready, one at a time and 1,000 at once.

The figures measure the operator, not N broker processes: a real API server (the envtest
control plane, built once by `make envtest`) and one real ferry-broker, which every Queue
reaches through the operator's --broker-url (each Queue still gets its children, its token
Secret and its queue on that broker). The operator runs with its default intervals.

First, `--singles` Queues (20) are created one at a time, each waited for before the next:
apply -> Ready, from the create request to the watch event that shows Ready=True (median,
p90). Then `--queues` Queues (1,000) are created in one `kubectl create` (which sends a
List's items one request at a time, as `kubectl apply -f dir/` does) and timed until every
one is Ready; the seconds the `kubectl create` itself took are reported apart. Then the
operator is left idle for a window and the API requests of that window are counted.

Printed: the machine's load average, the CPU seconds each server used during the burst
(operator, broker, kube-apiserver, etcd, kube-controller-manager: less sensitive to a
shared machine's load than the seconds), the API requests the burst cost
(`apiserver_request_total` before and after, by verb and resource), the operator's passes
in the burst and the timer passes it skipped for Queues still waiting for their first
(its /metrics), and the API requests of the idle window. Not part of `make test`: a time
on a shared machine is a report, never an assertion.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, cast

from kubernetes import client, watch
from testsupport.ports import free_port
from testsupport.waiting import answers, eventually

from bench.processes import ServerProcess, tree_cpu_seconds
from bench.profiling import py_spy, summarize
from ferry.operator.clients.kube import load_credentials
from ferry.operator.identity import GROUP, VERSION
from kubeplane import ControlPlane, start, stop
from kubeplane.planes import status

ROOT = Path(__file__).resolve().parents[1]

NAMESPACE = "scale"
BURST = "bench.ferry.dev/burst"  # label of the Queues created at once
IDLE_S = 30.0  # the idle window after the burst
PROFILE_RATE = 50  # py-spy samples/s of the operator: cheap over a minute-long burst


def _requests(plane: ControlPlane) -> Counter[str]:
    """apiserver_request_total so far, by verb and resource (subresource)."""
    attempts = 6  # a starved API server may drop the stream of a big answer, or time out
    for attempt in range(attempts):  # the TLS handshake (load average 15 and more)
        result = plane.kubectl("get", "--raw", "/metrics", check=attempt == attempts - 1)
        if result.returncode == 0:
            break
        time.sleep(2)  # a breather for the API server, not synchronisation
    text = result.stdout
    found: Counter[str] = Counter()  # the counters are whole numbers printed as floats
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels, value = line.rsplit(" ", 1)
        fields = dict(part.split("=", 1) for part in labels[len("apiserver_request_total{"):-1]
                      .replace('"', "").split(","))
        what = fields.get("resource", "") or "(non-resource)"
        if fields.get("subresource"):
            what += "/" + fields["subresource"]
        found[f"{fields.get('verb', '?')} {what}"] += round(float(value))
    return found


def _passes(metrics_url: str) -> dict[str, float]:
    """The operator's passes so far (ferry_operator_reconciles_total, all outcomes) and its
    timer passes skipped for new Queues (ferry_operator_deferred_timer_passes_total)."""
    wanted = {"ferry_operator_reconciles_total": "passes",
              "ferry_operator_deferred_timer_passes_total": "deferred_timer_passes"}
    found = dict.fromkeys(wanted.values(), 0.0)
    with urllib.request.urlopen(metrics_url, timeout=30) as answer:
        for line in answer.read().decode().splitlines():
            name = line.split("{", 1)[0]
            if name in wanted:
                found[wanted[name]] += float(line.rsplit(" ", 1)[1])
    return found


def is_ready(queue: Mapping[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (queue.get("status") or {}).get("conditions") or [])


class Readiness:
    """When each Queue of the burst was first seen Ready, from one watch: the bench asks the
    API server nothing per second (listing 1,000 Queues every second, through a new kubectl
    each time, cost the loaded API server and the machine more than the figure it gave)."""

    def __init__(self, api: client.CustomObjectsApi, since: str) -> None:
        self.ready: dict[str, float] = {}
        self.failure: BaseException | None = None
        self._stream = watch.Watch()  # type: ignore[no-untyped-call]
        self._thread = threading.Thread(target=self._follow, args=(api, since), daemon=True,
                                        name="readiness")
        self._thread.start()

    def _follow(self, api: client.CustomObjectsApi, since: str) -> None:
        # Without a timeout the client watches again from the last version it saw when a
        # stream ends; the thread ends with the run (a daemon, its plane stopped under it).
        try:
            events: Iterator[dict[str, Any]] = self._stream.stream(  # type: ignore[no-untyped-call]
                api.list_namespaced_custom_object, GROUP, VERSION, NAMESPACE, "queues",
                label_selector=BURST, resource_version=since)
            for event in events:
                if is_ready(event["object"]):
                    self.ready.setdefault(event["object"]["metadata"]["name"], time.monotonic())
        except Exception as error:  # reported by the run, which stops waiting
            self.failure = error

    def stop(self) -> None:
        self._stream.stop()  # type: ignore[no-untyped-call]


def _cpu(plane_dir: Path, servers: list[ServerProcess]) -> dict[str, float]:
    """CPU seconds used so far by each server of the run: where the time goes."""
    pids = {**status(plane_dir), **{s.name: s.pid for s in servers}}
    return {name: tree_cpu_seconds(pid) for name, pid in pids.items()}


def _wait_http(url: str, server: ServerProcess, limit: float = 60) -> None:
    def up() -> bool:
        server.check_alive()
        return answers(url)

    eventually(up, f"{url} to answer", limit)


def _queue(name: str, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Queue",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": dict(labels or {})},
            "spec": {}}


def apply_to_ready(api: client.CustomObjectsApi, count: int, limit: float) -> list[float]:
    """Seconds from each create request to the watch event showing it Ready, one Queue at a
    time (each waited for before the next is created)."""
    seconds = []
    for i in range(count):
        name = f"one{i:02d}"
        began = time.monotonic()
        made = cast(dict[str, Any], api.create_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, "queues", _queue(name)))
        # Watched from the creation on: no event between the create and the watch is lost.
        stream = watch.Watch()  # type: ignore[no-untyped-call]
        events: Iterator[dict[str, Any]] = stream.stream(  # type: ignore[no-untyped-call]
            api.list_namespaced_custom_object, GROUP, VERSION, NAMESPACE, "queues",
            field_selector=f"metadata.name={name}",
            resource_version=made["metadata"]["resourceVersion"], timeout_seconds=int(limit))
        for event in events:
            if is_ready(event["object"]):
                stream.stop()  # type: ignore[no-untyped-call]
                break
        else:
            raise RuntimeError(f"Queue {name} was not Ready within {limit:g} s")
        seconds.append(time.monotonic() - began)
    return seconds


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


@contextlib.contextmanager
def profiling(pid: int, out: Path | None) -> Iterator[None]:
    """py-spy samples of the operator while the block runs, and their summary (by function
    and area) in `out`; nothing without `out`."""
    if out is None:
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    raw = out / "operator.txt"
    began = time.monotonic()
    proc = subprocess.Popen([py_spy(), "record", "--pid", str(pid), "--rate", str(PROFILE_RATE),
                             "--format", "raw", "--nonblocking", "--output", str(raw)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
        if raw.exists():
            (out / "operator-summary.txt").write_text(
                summarize(raw.read_text(), time.monotonic() - began, rate=PROFILE_RATE))


def run(count: int, singles: int, timeout: float, work: Path,
        profile: Path | None) -> dict[str, Any]:
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
    figures: dict[str, Any] = {}
    try:
        plane.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        plane.wait_established("queues.ferry.dev")
        plane.kubectl("create", "namespace", NAMESPACE)
        broker.start()
        _wait_http(f"http://127.0.0.1:{broker_port}/healthz", broker)
        operator.start()
        _wait_http(f"http://127.0.0.1:{metrics_port}/healthz", operator)
        api = client.CustomObjectsApi(client.ApiClient(load_credentials(str(plane.kubeconfig))))
        if singles:
            one = apply_to_ready(api, singles, timeout)
            figures |= {"singles": singles,
                        "apply_to_ready_median_s": round(statistics.median(one), 3),
                        "apply_to_ready_p90_s": round(percentile(one, 0.9), 3),
                        "apply_to_ready_max_s": round(max(one), 3),
                        "singles_load_average_1m": os.getloadavg()[0]}
            print(f"apply -> Ready, {singles} Queues one at a time: median "
                  f"{figures['apply_to_ready_median_s']} s, p90 {figures['apply_to_ready_p90_s']} "
                  f"s (load average {figures['singles_load_average_1m']:.1f})", flush=True)
        queues = {"apiVersion": "v1", "kind": "List", "items": [
            _queue(f"q{i:04d}", {BURST: "yes"}) for i in range(count)]}
        listed = cast(dict[str, Any], api.list_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, "queues"))
        readiness = Readiness(api, listed["metadata"]["resourceVersion"])
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        passes_before = _passes(metrics_url)
        before, cpu_before = _requests(plane), _cpu(work / "plane", [operator, broker])
        began = time.monotonic()
        with profiling(operator.pid, profile):
            plane.kubectl("create", "-f", "-", input=json.dumps(queues), timeout=timeout)
            # kubectl creates a List's items one request at a time: how long that alone
            # took tells the API server's share from the operator's.
            created = time.monotonic() - began
            print(f"  kubectl create of {count} Queues returned after {created:.1f} s "
                  f"({len(readiness.ready)} Ready by then)", flush=True)
            while (len(readiness.ready) < count and readiness.failure is None
                   and time.monotonic() - began < timeout):
                time.sleep(1)  # a progress line, not synchronisation: the watch records
                print(f"  {time.monotonic() - began:6.1f}s  {len(readiness.ready)}/{count} "
                      "Ready", flush=True)
        readiness.stop()
        if readiness.failure is not None:
            print(f"  (watching the Queues failed: {readiness.failure})", flush=True)
        ready = len(readiness.ready)
        seconds = (max(readiness.ready.values()) if ready == count else time.monotonic()) \
            - began
        load = os.getloadavg()[0]
        cpu = _cpu(work / "plane", [operator, broker])
        burst = _requests(plane) - before
        passes = _passes(metrics_url)
        figures |= {"queues": count, "ready": ready, "seconds": round(seconds, 1),
                    "create_seconds": round(created, 1),
                    "api_requests": round(burst.total()),
                    "api_requests_per_queue": round(burst.total() / count, 1),
                    "api_requests_per_queue_by_kind": {
                        what: round(n / count, 2) for what, n in burst.most_common()
                        if n / count >= 0.05},
                    **{f"operator_{k}": round(passes[k] - passes_before[k]) for k in passes},
                    "load_average_1m": load,
                    **{f"cpu_seconds_{name}": round(cpu[name] - cpu_before.get(name, 0.0), 1)
                       for name in cpu}}
        if ready == count:
            quiet = _requests(plane)
            time.sleep(IDLE_S)  # a measuring window, not synchronisation
            idle = _requests(plane) - quiet
            # Every client's requests (the controller-manager's, these metric reads): an
            # upper bound on the operator's, whose idle budget is 2 per Queue and minute.
            per_minute = 60 / IDLE_S / (count + singles)
            figures["idle_api_requests_per_queue_minute"] = round(idle.total() * per_minute, 3)
            figures["idle_api_requests_by_kind"] = dict(idle.most_common(8))
        return figures
    finally:
        asyncio.run(operator.stop(30))
        asyncio.run(broker.stop(30))
        stop(work / "plane")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.operator_scale", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--queues", type=int, default=1000, help="Queues created at once (1000)")
    p.add_argument("--singles", type=int, default=20,
                   help="Queues created one at a time first, for apply -> Ready (20; 0: none)")
    p.add_argument("--timeout", type=float, default=600, help="give up after (600 s)")
    p.add_argument("--profile", type=Path, default=None,
                   help="record the operator with py-spy during the burst into this folder")
    p.add_argument("--keep", type=Path, default=None,
                   help="run in this folder and keep it (the operator's and broker's logs)")
    args = p.parse_args(argv)
    if args.queues < 1:
        p.error("--queues must be at least 1")
    if args.singles < 0:
        p.error("--singles must be at least 0")
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        figures = run(args.queues, args.singles, args.timeout, args.keep, args.profile)
    else:
        with tempfile.TemporaryDirectory(prefix="ferry-operator-scale-") as work:
            figures = run(args.queues, args.singles, args.timeout, Path(work), args.profile)
    print(json.dumps(figures))
    return 0 if figures["ready"] == figures["queues"] else 1


if __name__ == "__main__":
    sys.exit(main())
