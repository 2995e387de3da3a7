"""Ferry on a kind cluster, the way a user installs it: the image built from this
checkout, `kubectl apply -k manifests/`, the examples, real pods.

Skipped, with the reason, where no Docker engine answers (see conftest.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from fixtures.manifests import overlay
from testsupport.waiting import eventually

from ferrydemo.checking import compare, read_sample, stored_keys

ROOT = Path(__file__).resolve().parents[2]
NS = "ferry-e2e"
FERRY = str(Path(sys.executable).parent / "ferry")
pytestmark = pytest.mark.e2e


def _eventually(probe: Callable[[], Any], what: str, timeout: float = 600) -> Any:
    return eventually(lambda: probe() or None, what, timeout, interval=2)


def _examples(image: str) -> str:
    """The examples as a user applies them, with the image loaded into kind and the
    pipeline pushed to build lag (unpaced, looping streamers: the collectors' HPA
    has something to do; later passes are time-shifted copies of the sample)."""
    docs = []
    for name in ("telemetry-db.yaml", "telemetrypipeline.yaml", "queue.yaml",
                 "consumergroup.yaml", "orders-worker.yaml"):
        for doc in yaml.safe_load_all((ROOT / "examples" / name).read_text()):
            if doc["kind"] == "TelemetryPipeline":
                doc["spec"]["image"] = image
                doc["spec"]["queue"].setdefault("broker", {})["image"] = image
                doc["spec"]["streamer"]["ratePerSecond"] = 0
                doc["spec"]["streamer"]["loop"] = True
                doc["spec"]["collector"]["lagPerReplica"] = 50
            elif doc["kind"] == "Queue":
                doc["spec"].setdefault("broker", {})["image"] = image
            elif doc["kind"] == "Deployment":
                doc["spec"]["template"]["spec"]["containers"][0]["image"] = image
            docs.append(doc)
    return yaml.safe_dump_all(docs)


def test_install_run_scale_and_clean_up(kind_cluster: Any, ferry_image: str,
                                        tmp_path: Path) -> None:
    kubectl: Callable[..., str] = kind_cluster.kubectl
    kind_cluster.load_docker_image(ferry_image)

    kubectl("apply", "--server-side", "-k", str(overlay(tmp_path / "overlay", image=ferry_image)))
    kubectl("wait", "-n", "ferry-system", "deployment", "--all", "--for=condition=Available",
            "--timeout=300s")
    kubectl("create", "namespace", NS)
    examples = tmp_path / "examples.yaml"
    examples.write_text(_examples(ferry_image))
    kubectl("apply", "--server-side", "-n", NS, "-f", str(examples))
    for resource in ("tp/gpu-telemetry", "queue/orders", "cg/orders-workers"):
        kubectl("wait", "-n", NS, resource, "--for=condition=Ready", "--timeout=600s")

    # Collectors scale on lag through Ferry's External Metrics API, then the data arrives.
    def collectors() -> int:
        status = json.loads(kubectl("get", "-n", NS, "deployment/gpu-telemetry-collector",
                                    "-o", "json")).get("status", {})
        return int(status.get("replicas", 0))
    _eventually(lambda: collectors() > 1, "the HPA scaled the collectors above 1")
    expected = read_sample(ROOT / "examples" / "data" / "dcgm_sample.csv")
    with kind_cluster.port_forward("service/gpu-telemetry-api", 8080, "-n", NS) as port:
        api = f"http://127.0.0.1:{port}"
        verdict = _eventually(
            lambda: (v := compare(expected.keys, stored_keys(api))).missing == 0 and v,
            "every sample row stored")
    assert verdict.duplicates == 0

    # Publish through the broker Service; the example workers ack everything.
    with kind_cluster.port_forward("service/orders-broker", 7070, "-n", NS) as port:
        url = f"http://127.0.0.1:{port}"
        subprocess.run([FERRY, "--broker-url", url, "publish", "orders"],
                       input="\n".join(f'{{"order": {i}}}' for i in range(200)), text=True,
                       check=True, capture_output=True)
        def drained() -> bool:
            out = subprocess.run([FERRY, "--broker-url", url, "--json", "group", "stats", "orders",
                                  "orders-workers"], capture_output=True, text=True, check=True)
            return int(json.loads(out.stdout).get("lag", -1)) == 0
        _eventually(drained, "the orders workers acked every message")

    # Deleting the pipeline removes its children (owner references + finalizers).
    kubectl("delete", "-n", NS, "tp/gpu-telemetry", "--timeout=300s")
    def cleaned_up() -> bool:
        left = kubectl("get", "-n", NS, "queues,consumergroups,statefulsets,deployments",
                       "-l", "app.kubernetes.io/instance=gpu-telemetry", "-o", "name")
        return not left.strip()
    _eventually(cleaned_up, "the pipeline's children are gone")
