"""The demo's steps, in order, and the teardown that undoes them whatever happened."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg
import yaml
from kubernetes import client, config
from testsupport.ports import lasting_port
from testsupport.processes import Process, tail
from testsupport.services import ThreadedService
from testsupport.waiting import GaveUpError, answers, eventually

from ferry.operator.reconcile.pipelines import API_PORT, group_name, queue_name
from ferry.operator.reconcile.queues import BROKER_PORT, broker_name
from ferry.operator.reconcile.specs import Owner
from ferry.telemetry.storage.opening import store_for
from ferrydemo import checking, failover, postgres
from ferrydemo.display import Console, Progress, Report, Summary
from ferrydemo.kubelet import Kubelet
from ferrydemo.supervising import Supervisor
from kubeplane import ControlPlane, ControlPlaneError, aggregation, ensure_built
from kubeplane import start as start_plane
from kubeplane import stop as stop_plane

PIPELINE = Path("examples/telemetrypipeline.yaml")
DATABASE = Path("examples/telemetry-db.yaml")
SAMPLE = Path("examples/data/dcgm_sample.csv")
SAMPLE_IN_IMAGE = "/usr/share/ferry/examples"
GENERATED = "dcgm_generated.csv"  # the unpaced pass's sample, beside SAMPLE's copy
# The unpaced pass's fleet: 20 hosts x 8 GPUs x 10 DCGM metrics = 1,600 rows a scrape. Another
# seed and start than the example sample's, so no row of one pass is a row of the other.
GENERATE = ("--hosts", "20", "--gpus-per-host", "8", "--seed", "8",
            "--start", "2026-11-24T10:00:00Z")
ROWS_PER_SCRAPE = 20 * 8 * 10
STALL_SECONDS = 60.0
# Where the HPA's lag metric comes from: ferry-metrics-api, as manifests/components/metrics-api
# installs it (there, its Deployment and Service in ferry-system).
METRICS_GROUP, METRICS_VERSION = "external.metrics.k8s.io", "v1beta1"
METRICS_NAMESPACE, METRICS_SERVICE = "kube-system", "ferry-metrics-api"


class DemoError(RuntimeError):
    pass


@dataclass(frozen=True)
class Pass:
    """One run of the pipeline over a sample: its spec.streamer.ratePerSecond, and either the
    example sample (generated_rows None, trimmed by --rows) or a generated one that size."""
    rate: int
    generated_rows: int | None = None

    @property
    def label(self) -> str:
        return "paced" if self.rate > 0 else "unpaced"


def plan(*, rate: int | None, failover: bool, unpaced_rows: int,
         example_rate: int) -> tuple[Pass, ...]:
    """--rate R: one pass over the example sample at R. By default the example as it is
    (paced), then a generated sample unpaced; --failover keeps to the first."""
    if rate is not None:
        return (Pass(rate),)
    if failover:
        return (Pass(example_rate),)
    return Pass(example_rate), Pass(0, unpaced_rows)


@dataclass(frozen=True)
class Settings:
    root: Path
    workdir: Path
    namespace: str
    rows: int | None
    timeout: float
    failover: bool = False  # the queue on 2 broker pods over PostgreSQL; leader killed half-way
    passes: tuple[Pass, ...] = (Pass(0),)


def example_rate(root: Path) -> int:
    """The example pipeline's own pace: its spec.streamer.ratePerSecond."""
    return int(_docs(root / PIPELINE)[0]["spec"]["streamer"].get("ratePerSecond", 0))


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _head(src: Path, dst: Path, rows: int | None) -> Path:
    """Copy a CSV's header and its first `rows` rows (all of them: None) to dst."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with src.open() as f, dst.open("w") as out:
        for i, line in enumerate(f):
            if rows is not None and i > rows:
                break
            out.write(line)
    return dst


def database_address(root: Path) -> str:
    """host:port of the database URL in examples/telemetry-db.yaml's Secret (what the
    pipeline's pods connect to, and a local PostgreSQL stands in for)."""
    secret = next(d for d in _docs(root / DATABASE) if d["kind"] == "Secret")
    url = urllib.parse.urlsplit(secret["stringData"]["url"])
    return f"{url.hostname}:{url.port}"


class Run:
    def __init__(self, settings: Settings, console: Console) -> None:
        self.s, self.console = settings, console
        self.supervisor = Supervisor(settings.workdir / "logs")
        self.plane: ControlPlane | None = None
        self.kubelet: Kubelet | None = None
        self.infra: list[Process] = []
        self.pg_dir: Path | None = None
        self.service: ThreadedService | None = None  # --failover: the broker's Service
        self.broker_ports: list[int] = []  # running broker pods' ports, for the Service
        self.takeover: failover.Takeover | None = None
        # The collectors' pods while their HPA is at work (None before and after): every
        # change is shown, wherever it happens; peak is the current pass's most.
        self.collectors: int | None = None
        self.peak = 0
        pipeline = _docs(settings.root / PIPELINE)[0]
        self.pipeline = pipeline["metadata"]["name"]
        owner = Owner(api_version=pipeline["apiVersion"], kind=pipeline["kind"],
                      name=self.pipeline, namespace=settings.namespace, uid="", generation=1)
        self.queue, self.group = queue_name(owner), group_name(owner)

    # -- the steps -------------------------------------------------------------------------

    def execute(self) -> Report:
        c, s = self.console, self.s
        c.steps = 6 + 4 * len(s.passes)
        c.step("Local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager)")
        self.plane = self._start_plane()
        c.info(f"serving at {self.plane.server}; kubeconfig {self.plane.kubeconfig}")

        c.step("Installing Ferry's CustomResourceDefinitions from crds/")
        self._kubectl("apply", "--server-side", "-f", str(s.root / "crds"))
        self.plane.wait_established("queues.ferry.dev", "consumergroups.ferry.dev",
                                    "telemetrypipelines.ferry.dev", timeout=60)
        c.block(self._kubectl("get", "crd", "-l", "app.kubernetes.io/part-of=ferry"))

        c.step("Stand-ins for what a cluster would pull from a registry")
        sample = self._sample()
        self.pg_dir = Path(tempfile.mkdtemp(prefix="ferry-demo-pg-"))
        pg = postgres.start(self.supervisor, self.pg_dir, lasting_port())
        self.infra.append(self.supervisor.children[-1])
        c.info(f"PostgreSQL {pg} stands in for {DATABASE}'s StatefulSet")
        c.info(f"the Ferry image's {SAMPLE_IN_IMAGE} is {sample.parent}")

        broker_port, api_port, metrics_port = lasting_port(), lasting_port(), lasting_port()
        if s.failover:
            self.service = ThreadedService(broker_port, lambda: self.broker_ports)
            self.service.start()
            c.info(f"the Queue runs {failover.REPLICAS} broker pods over PostgreSQL; its "
                   f"Service (127.0.0.1:{broker_port}) routes to the ready one, the leader")

        c.step("Starting the Ferry operator (ferry-operator)")
        operator = self.supervisor.start("ferry-operator", [
            "ferry-operator", "--kubeconfig", str(self.plane.kubeconfig), "--standalone",
            "--namespace", s.namespace, "--broker-url", f"http://127.0.0.1:{broker_port}",
            "--metrics-host", "127.0.0.1", "--metrics-port", str(metrics_port),
            "--stats-seconds", "2", "--resync-seconds", "10"])
        self.infra.append(operator)

        def healthy() -> bool:
            self._check()  # fails fast: a stopped operator, a crashing pod
            return answers(f"http://127.0.0.1:{metrics_port}/healthz")

        try:
            eventually(healthy, "the operator's /healthz", 60)
        except GaveUpError:
            raise DemoError(f"the operator did not answer /healthz; see {operator.log}") from None
        c.info(f"watching namespace {s.namespace}; /metrics on 127.0.0.1:{metrics_port}")

        c.step(f"Starting Ferry's metrics API (ferry-metrics-api): {METRICS_VERSION}."
               f"{METRICS_GROUP}, the lag the collectors' HPA scales on")
        self._serve_metrics_api()

        self._kubectl("create", "namespace", s.namespace)
        summaries = []
        for i, run in enumerate(s.passes):
            self.peak = self.collectors or 0  # the pass starts with the collectors it finds
            if i == 0:
                c.step(f"{run.label.capitalize()} pass: applying {DATABASE} and {PIPELINE}" + (
                    f" (its queue: replicas {failover.REPLICAS}, storage.engine postgres)"
                    if s.failover else ""))
                pipeline = self._pipeline(run, pg)
                self._kubectl("apply", "--server-side", "-n", s.namespace,
                              "-f", str(s.root / DATABASE), "-f", str(pipeline))
                if pipeline != s.root / PIPELINE:
                    c.info(f"applied {pipeline}: {PIPELINE} with spec.streamer.ratePerSecond "
                           f"{run.rate}, source.path {self._source(run)}")
                self.kubelet = self._kubelet(sample.parent, broker_port, api_port, pg)
                self._wait_ready()
                self._wait_scaling()
                self.collectors = self.peak = self._count("collector", running_only=False)
            else:
                c.step(f"{run.label.capitalize()} pass: "
                       + (f"{run.generated_rows:,} generated rows, " if run.generated_rows
                          else "") + f"spec.streamer.ratePerSecond {run.rate}")
                if run.generated_rows is not None:
                    self._generate(run.generated_rows, sample.parent / GENERATED)
                self._empty_tables(pg)
                self._stop_streamers()
            summaries.append(self._pass(run, pg, api_port, restart=i > 0))
        self.collectors = None  # the pipeline's deletion stops its collectors, not the HPA

        c.step(f"Deleting TelemetryPipeline {self.pipeline}: the operator cleans up")
        self._delete_pipeline()
        report = Report(tuple(summaries))
        if len(summaries) > 1:
            c.note("\nThroughput, paced and unpaced:")
            c.block(report.text())
        return report

    def _pass(self, run: Pass, pg: str, api_port: int, *, restart: bool) -> Summary:
        """Stream the applied pipeline's sample (restart: the stopped streamers started again
        on the pass's pace and sample, the progress shown from then on) and read every row
        back: the pass's summary."""
        c, s = self.console, self.s
        sample = self.s.workdir / "image-files" / Path(self._source(run)).name
        c.step(f"Streaming {sample.name} ({run.label}): "
               "streamers -> queue -> collectors -> PostgreSQL")
        expected = checking.read_sample(sample)
        dead_before = self._group_status().get("dead", 0)
        if restart:
            self._start_streamers(run)
        seconds = self._stream(pg, len(expected.keys))

        c.step(f"kubectl get queues,cg,tp -n {s.namespace} (after the {run.label} run)")
        self._sync_for(3.0)  # one more stats poll by the operator, so the figures are final
        c.block(self._kubectl("get", "queues,cg,tp", "-n", s.namespace))
        ready = self._condition("telemetrypipeline", self.pipeline, "Ready")
        if ready.get("status") != "True" and self._count("streamer") == 0:
            c.info("(the streamers have finished the sample and exited, so the pipeline counts "
                   "them as not ready; with spec.streamer.loop they keep streaming)")

        c.step(f"Reading every row of the {run.label} pass back through the query API "
               "(/api/v1/gpus/...)")
        api = f"http://127.0.0.1:{api_port}"
        stored = checking.stored_keys(api)
        verdict = checking.compare(expected.keys, stored)
        gpus = len({k[0] for k in stored})
        summary = Summary(
            label=run.label, rate_per_streamer=run.rate,
            rows_in_sample=expected.rows, rows_rejected=expected.rejected,
            rows_stored=verdict.stored, duplicates=verdict.duplicates, missing=verdict.missing,
            unexpected=verdict.unexpected,
            dead_letters=self._group_status().get("dead", 0) - dead_before,
            seconds=seconds, streamers=self._count("streamer", running_only=False),
            collectors_peak=self.peak, gpus=gpus,
            failover=None if self.takeover is None else
            f"leader {self.takeover.killed} killed (SIGKILL) half-way, {self.takeover.leader}",
            takeover_seconds=None if self.takeover is None else self.takeover.seconds)
        c.block(summary.text())
        return summary

    def teardown(self) -> int:
        """Stop everything this run started; how many processes were still running."""
        running = sum(1 for ch in self.supervisor.children if ch.alive())
        if self.kubelet is not None:
            self.kubelet.stop_all()
        self.supervisor.stop_all()
        if self.service is not None:
            self.service.stop()
        if self.plane is not None:
            running += len(stop_plane(self.plane.directory))
        if self.pg_dir is not None:
            shutil.rmtree(self.pg_dir, ignore_errors=True)
        return running

    # -- helpers ---------------------------------------------------------------------------

    def _start_plane(self) -> ControlPlane:
        try:
            binaries = ensure_built(self.console.info)
            return start_plane(self.s.workdir / "plane", binaries=binaries,
                               die_with_parent=True, progress=self.console.info)
        except ControlPlaneError as error:
            raise DemoError(f"the control plane did not start: {error}") from error

    def _serve_metrics_api(self) -> None:
        """ferry-metrics-api on 127.0.0.1, registered as the cluster's external metrics
        APIService (an ExternalName Service `localhost`, see kubeplane.aggregation); it finds
        each ConsumerGroup's broker in the group's status, as in a cluster."""
        assert self.plane is not None
        cert, ca = aggregation.serving_cert(self.s.workdir / "metrics-api", METRICS_NAMESPACE,
                                            METRICS_SERVICE)
        port = lasting_port()
        self.infra.append(self.supervisor.start("ferry-metrics-api", [
            "ferry-metrics-api", "--kubeconfig", str(self.plane.kubeconfig),
            "--bind-address", "127.0.0.1", "--secure-port", str(port),
            "--tls-cert-file", str(cert.cert), "--tls-private-key-file", str(cert.key),
            "--namespace", METRICS_NAMESPACE, "--service", METRICS_SERVICE]))
        items = aggregation.manifests(METRICS_GROUP, METRICS_VERSION,
                                      namespace=METRICS_NAMESPACE, service=METRICS_SERVICE,
                                      port=port, ca_bundle=ca.cert.read_bytes())
        out = self.plane.kubectl("apply", "-f", "-", check=False, input=json.dumps(
            {"apiVersion": "v1", "kind": "List", "items": items}))
        if out.returncode != 0:
            raise DemoError(f"registering the metrics API: {out.stderr.strip()}")
        apiservice = f"apiservice/{METRICS_VERSION}.{METRICS_GROUP}"

        def available() -> bool:
            self._check()
            return aggregation.available(json.loads(self._kubectl("get", apiservice,
                                                                  "-o", "json")))
        try:
            eventually(available, f"{apiservice} Available", 60)
        except GaveUpError:
            raise DemoError(f"{apiservice} did not become Available; see "
                            f"{self.supervisor.log_dir / 'ferry-metrics-api.log'}") from None
        self.console.info(f"{apiservice} -> https://127.0.0.1:{port}: Available")

    def _kubectl(self, *args: str) -> str:
        assert self.plane is not None
        out = self.plane.kubectl(*args, check=False)
        if out.returncode != 0:
            raise DemoError(f"kubectl {' '.join(args)}: {out.stderr.strip()}")
        return str(out.stdout)

    def _check(self) -> None:
        """Fail fast: a stopped infrastructure process or a pod that keeps crashing."""
        if self.kubelet is not None and (crashing := self.kubelet.crashing()):
            pod, log = crashing
            raise DemoError(f"pod {pod} keeps crashing; last lines of {log}:\n{tail(log, 20)}")
        for child in self.infra:
            child.check()

    def _sample(self) -> Path:
        """The CSV the streamers read, in the folder that stands in for the image's: the
        sample, or its first --rows rows."""
        return _head(self.s.root / SAMPLE, self.s.workdir / "image-files" / SAMPLE.name,
                     self.s.rows)

    def _generate(self, rows: int, path: Path) -> None:
        """A larger sample from the generator: whole scrapes of the fleet, cut to `rows`."""
        scrapes = -(-rows // ROWS_PER_SCRAPE)
        full = path.with_suffix(".full.csv")
        command = ["ferry-telemetry", "generate", *GENERATE, "--scrapes", str(scrapes),
                   "--out", str(full)]
        subprocess.run(command, check=True, capture_output=True, text=True)
        _head(full, path, rows)
        full.unlink()
        self.console.info(f"{' '.join(command[:-2])}: {rows:,} rows in {path}")

    def _source(self, run: Pass) -> str:
        """Where the pass's streamers read their sample, inside the image."""
        return f"{SAMPLE_IN_IMAGE}/{SAMPLE.name if run.generated_rows is None else GENERATED}"

    def _pipeline(self, run: Pass, pg: str) -> Path:
        """The example pipeline as the pass runs it: as it is, or with the pass's pace and
        sample, or (--failover) a replicated queue and its database's Secret, as one file to
        apply (the queue set lives in the demo's PostgreSQL, beside the telemetry)."""
        example = self.s.root / PIPELINE
        doc = _docs(example)[0]
        streamer = doc["spec"]["streamer"]
        changed = run.rate != streamer.get("ratePerSecond", 0) or run.generated_rows is not None
        if not changed and not self.s.failover:
            return example
        streamer["ratePerSecond"] = run.rate
        streamer["source"] = {"path": self._source(run)}
        docs = [failover.secret(pg), failover.replicated(doc)] if self.s.failover else [doc]
        path = self.s.workdir / f"telemetrypipeline-{run.label}.yaml"
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        return path

    def _stop_streamers(self) -> None:
        """The running pipeline's streamers stopped (replicas 0), to be started again together
        on the next pass's pace and sample (a rolling update would start one streamer seconds
        before the other); the queue, collectors and API carry on."""
        self._patch({"replicas": 0})

        def stopped() -> bool:
            self._sync()
            self._check()
            return self._count("streamer", running_only=False) == 0
        try:
            eventually(stopped, "the streamers to stop", self.s.timeout, interval=0.5)
        except GaveUpError:
            raise DemoError(f"the streamers still run {self.s.timeout:.0f}s after "
                            "spec.streamer.replicas 0") from None

    def _start_streamers(self, run: Pass) -> None:
        """The stopped streamers back, on the pass's pace and sample."""
        streamer = _docs(self.s.root / PIPELINE)[0]["spec"]["streamer"]
        self._patch({"replicas": streamer.get("replicas", 1), "ratePerSecond": run.rate,
                     "source": {"path": self._source(run)}})

    def _patch(self, streamer: dict[str, Any]) -> None:
        patch = json.dumps({"spec": {"streamer": streamer}})
        self._kubectl("patch", "telemetrypipeline", self.pipeline, "-n", self.s.namespace,
                      "--type", "merge", "-p", patch)
        self.console.info(f"kubectl patch telemetrypipeline {self.pipeline} --type merge "
                          f"-p '{patch}'")

    def _empty_tables(self, pg: str) -> None:
        """A pass counts only its own rows: the previous pass's are deleted."""
        async def truncate() -> None:
            conn = await asyncpg.connect(pg)
            try:
                await conn.execute("TRUNCATE telemetry_samples, telemetry_gpus")
            finally:
                await conn.close()
        asyncio.run(truncate())
        self.console.info("TRUNCATE telemetry_samples, telemetry_gpus: the previous pass's "
                          "rows are gone")

    def _sync(self) -> None:
        """One kubelet pass; the Service learns which broker pods run."""
        assert self.kubelet is not None
        self.kubelet.sync()
        self.broker_ports = [port for _, port in self._brokers().values()]
        if self.collectors is not None:
            current = self._count("collector", running_only=False)
            if current != self.collectors:
                self.console.info(f"collectors {self.collectors} -> {current} (HPA on lag)")
                self.collectors = current
            self.peak = max(self.peak, current)

    def _brokers(self) -> dict[str, tuple[int, int]]:
        """Running broker pods: pod -> (pid, port)."""
        assert self.kubelet is not None
        return {c.pod: (c.child.pid, c.ports[BROKER_PORT])
                for c in list(self.kubelet.containers.values())
                if c.component == "broker" and c.child is not None}

    def _kubelet(self, image_files: Path, broker_port: int, api_port: int, pg: str) -> Kubelet:
        assert self.plane is not None
        api = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(self.plane.kubeconfig))
        ns = self.s.namespace
        pg_address = urllib.parse.urlsplit(pg).netloc.split("@")[-1]
        services = {
            f"http://{broker_name(self.queue)}.{ns}.svc:{BROKER_PORT}":
                f"http://127.0.0.1:{broker_port}",
            database_address(self.s.root): pg_address,
        }
        kubelet = Kubelet(
            core=client.CoreV1Api(api), namespace=ns, supervisor=self.supervisor,
            volumes=self.s.workdir / "volumes", image_files={SAMPLE_IN_IMAGE: image_files},
            services=services,
            # Replicated, the brokers take ports of their own behind the Service's.
            fixed_ports={("api", API_PORT): api_port} if self.s.failover else
            {("broker", BROKER_PORT): broker_port, ("api", API_PORT): api_port},
            say=self.console.info)
        kubelet.register()
        return kubelet

    def _get(self, kind: str, name: str) -> dict[str, Any]:
        assert self.plane is not None
        out = self.plane.kubectl("get", kind, name, "-n", self.s.namespace, "-o", "json",
                                 check=False)
        if out.returncode != 0:
            return {}
        body: dict[str, Any] = json.loads(out.stdout)
        return body

    def _group_status(self) -> dict[str, Any]:
        status: dict[str, Any] = self._get("consumergroup", self.group).get("status") or {}
        return status

    def _condition(self, kind: str, name: str, ctype: str) -> dict[str, Any]:
        for cond in (self._get(kind, name).get("status") or {}).get("conditions") or []:
            if cond.get("type") == ctype:
                return dict(cond)
        return {}

    def _sync_for(self, seconds: float) -> None:
        assert self.kubelet is not None
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._sync()
            self._check()
            time.sleep(0.5)

    def _wait_ready(self) -> None:
        assert self.kubelet is not None
        deadline = time.monotonic() + self.s.timeout
        last = ""
        while True:
            self._sync()
            self._check()
            ready = self._condition("telemetrypipeline", self.pipeline, "Ready")
            text = f"{ready.get('reason', 'waiting')}: {ready.get('message', '')}".strip(": ")
            if text != last:
                self.console.info(f"TelemetryPipeline {self.pipeline}: {text}")
                last = text
            if ready.get("status") == "True":
                return
            if time.monotonic() > deadline:
                raise DemoError(f"TelemetryPipeline {self.pipeline} not Ready after "
                                f"{self.s.timeout:.0f}s: {text}")
            time.sleep(0.5)

    def _wait_scaling(self) -> None:
        """Until the collectors' HPA has read the group's lag from the metrics API (its
        ScalingActive condition True): from then on it scales them on lag."""
        def active() -> dict[str, Any] | None:
            self._sync()
            self._check()
            cond = self._condition("horizontalpodautoscaler", self.group, "ScalingActive")
            return cond if cond.get("status") == "True" else None
        try:
            cond = eventually(active, f"HorizontalPodAutoscaler {self.group} ScalingActive",
                              self.s.timeout)
        except GaveUpError:
            found = self._condition("horizontalpodautoscaler", self.group, "ScalingActive")
            raise DemoError(f"HorizontalPodAutoscaler {self.group} cannot scale: "
                            f"{found.get('message', 'no ScalingActive condition')}") from None
        self.console.info(f"HorizontalPodAutoscaler {self.group}: ScalingActive True "
                          f"({cond.get('reason')}), the collectors scale on lag")

    def _count(self, component: str, *, running_only: bool = True) -> int:
        assert self.kubelet is not None
        return sum(1 for c in self.kubelet.containers.values() if c.component == component
                   and (c.child is not None or not running_only))

    def _stored(self, pg: str) -> int:
        async def count() -> int:
            async with store_for(pg) as store:
                return await store.count()
        return asyncio.run(count())

    def _last_stored(self, pg: str) -> float | None:
        """When the last row was stored (the collectors' clock, epoch seconds), if any was."""
        async def last() -> float | None:
            conn = await asyncpg.connect(pg)
            try:
                value = await conn.fetchval("SELECT max(stored_at_us) FROM telemetry_samples")
            finally:
                await conn.close()
            return None if value is None else float(value) / 1e6
        return asyncio.run(last())

    def _streamers_started(self) -> float:
        """When the pass's first streamer process started (epoch seconds; now if none runs
        yet): the pass's rows can be stored no sooner, so its rates are taken from there."""
        assert self.kubelet is not None
        return min((c.first_started for c in self.kubelet.containers.values()
                    if c.component == "streamer"), default=time.time())

    def _stream(self, pg: str, total: int) -> float:
        """Show the pass's progress until every row is stored (or none arrives for a while):
        the seconds from the streamers' start to the last row stored, the summary's time and
        the final progress line's, so both give one rate."""
        assert self.kubelet is not None
        started, began = self._streamers_started(), time.monotonic()
        last_change, last_stored, shown = began, -1, False
        self.console.start_progress()
        while True:
            self._sync()
            self._check()
            stored = self._stored(pg)
            now = time.monotonic()
            if stored != last_stored:
                last_stored, last_change = stored, now
            collectors = self._count("collector", running_only=False)
            progress = Progress(stored, total, self._group_status().get("lag"), collectors,
                                time.time() - started)
            done = stored >= total or now - last_change > STALL_SECONDS
            if not done:  # the last line is the final one below, with the summary's rate
                self.console.progress(progress)
            if not shown and stored * 2 >= total and stored < total:
                shown = True  # live figures, mid-stream
                self.console.progress(progress, final=True)
                self.console.info(f"kubectl get queues,cg,tp -n {self.s.namespace} (live)")
                self.console.block(self._kubectl("get", "queues,cg,tp", "-n", self.s.namespace))
            if self.s.failover and self.takeover is None and stored * 2 >= total:
                # Half-way (on a fast short run the poll may first see it done: still a kill).
                self._fail_over(stored, total)
            if done:
                # Done, or stuck: either way the read-back below says exactly what arrived.
                last = self._last_stored(pg)
                seconds = 0.0 if last is None else max(0.0, last - started)
                self.console.progress(replace(progress, elapsed=seconds), final=True)
                if stored < total:
                    self.console.info(f"no progress for {STALL_SECONDS:.0f}s")
                return seconds
            if now - began > self.s.timeout:
                raise DemoError(f"the pipeline had stored {stored}/{total} rows after "
                                f"{self.s.timeout:.0f}s")
            time.sleep(0.5)

    def _fail_over(self, stored: int, total: int) -> None:
        """Kill the leading broker pod's process; report how soon the standby led."""
        try:
            self.takeover = failover.kill_leader(self._brokers(), self._check)
        except RuntimeError as error:
            raise DemoError(str(error)) from error
        t = self.takeover
        self.console.info(f"kill -9 of the leading broker pod {t.killed} with {stored:,} of "
                          f"{total:,} rows stored: {t.leader} took over in {t.seconds:.2f} s; "
                          "clients retry through the Service")
        self._sync_for(1.5)  # the kubelet reports the killed pod, the new leader Ready
        self.console.block(self._kubectl("get", "pods", "-n", self.s.namespace,
                                         "-l", "app.kubernetes.io/component=broker"))

    def _delete_pipeline(self) -> None:
        self._kubectl("delete", "telemetrypipeline", self.pipeline, "-n", self.s.namespace,
                      "--wait=false")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            self._sync()
            left = self._kubectl("get", "telemetrypipelines,queues,consumergroups,deployments,"
                                 "statefulsets,pods", "-n", self.s.namespace,
                                 "-o", "name").split()
            left = [n for n in left if "telemetry-db" not in n]
            tp = self._get("telemetrypipeline", self.pipeline)
            if not tp and not left:
                self.console.info("TelemetryPipeline, Queue, ConsumerGroup, workloads and "
                                  "pods are gone; their processes stopped")
                return
            time.sleep(0.5)
        self.console.info(f"still deleting after 120s: {' '.join(left)}")
