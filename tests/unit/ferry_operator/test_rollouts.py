"""One workload at a time: which changes wait their turn (reconcile.rollouts)."""

from __future__ import annotations

from typing import Any

import pytest

from ferry.operator.reconcile import rollouts

pytestmark = pytest.mark.unit


def workload(kind: str = "StatefulSet", image: str = "ferry:1") -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": kind,
            "metadata": {"name": "w", "generation": 2},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [
                {"name": "broker", "image": image, "args": ["--x"]}]}}},
            "status": {}}


def test_a_workload_waiting_its_turn_keeps_its_images_and_nothing_else() -> None:
    desired = workload(image="ferry:2")
    desired["spec"]["template"]["spec"]["containers"][0]["args"] = ["--y"]
    kept = rollouts.keep_images(desired, workload(image="ferry:1"))
    (container,) = kept["spec"]["template"]["spec"]["containers"]
    assert (container["image"], container["args"]) == ("ferry:1", ["--y"])
    assert desired["spec"]["template"]["spec"]["containers"][0]["image"] == "ferry:2"
