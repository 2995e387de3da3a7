"""A deterministic fleet of GPU hosts and the DCGM samples they would export.

Pure: a seed and a start time in, rows out. Values follow per-GPU workloads
(busy training jobs, inference, idle) so utilisation, power, temperature,
memory and clocks move together the way they do on real hardware.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from ferry.telemetry.parsing.rows import TelemetryRow

MODELS = {
    # name: (framebuffer MiB, max power W, max SM clock MHz, memory clock MHz)
    "NVIDIA H100 80GB HBM3": (81559, 700.0, 1980, 2619),
    "NVIDIA A100-SXM4-80GB": (81920, 400.0, 1410, 1593),
    "NVIDIA L40S": (46068, 350.0, 2520, 9001),
}
DRIVER = "535.129.03"
METRICS = (
    "DCGM_FI_DEV_GPU_UTIL",
    "DCGM_FI_DEV_MEM_COPY_UTIL",
    "DCGM_FI_DEV_FB_USED",
    "DCGM_FI_DEV_FB_FREE",
    "DCGM_FI_DEV_GPU_TEMP",
    "DCGM_FI_DEV_MEMORY_TEMP",
    "DCGM_FI_DEV_POWER_USAGE",
    "DCGM_FI_DEV_SM_CLOCK",
    "DCGM_FI_DEV_MEM_CLOCK",
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
)
JOBS = (
    ("pytorch", "llm-pretrain-{n}", "ml-training", 0.92),
    ("triton", "inference-{n}", "serving", 0.45),
    ("jupyter", "notebook-{n}", "research", 0.15),
)


@dataclass
class Gpu:
    host: str
    index: int
    uuid: str
    model: str
    job: tuple[str, str, str] | None  # container, pod, namespace
    load: float  # the workload's typical utilisation 0..1
    util: float = 0.0
    temp: float = 35.0


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def fleet(hosts: int, gpus_per_host: int, seed: int) -> list[Gpu]:
    rng = random.Random(seed)
    gpus = []
    models = list(MODELS)
    for h in range(hosts):
        host = f"dgx-{models[h % len(models)].split()[1].split('-')[0].lower()}-{h + 1:02d}"
        model = models[h % len(models)]
        for i in range(gpus_per_host):
            job = None
            load = 0.02
            if rng.random() < 0.8:
                container, pod, ns, load = JOBS[rng.randrange(len(JOBS))]
                job = (container, pod.format(n=f"{rng.getrandbits(20):05x}-{i}"), ns)
            gpus.append(Gpu(host, i, _uuid(rng), model, job, load))
    return gpus


def _labels(gpu: Gpu) -> str:
    labels = [
        f'DCGM_FI_DRIVER_VERSION="{DRIVER}"',
        f'Hostname="{gpu.host}"',
        f'UUID="{gpu.uuid}"',
        f'device="nvidia{gpu.index}"',
        f'gpu="{gpu.index}"',
        f'modelName="{gpu.model}"',
    ]
    if gpu.job:
        container, pod, ns = gpu.job
        labels += [f'container="{container}"', f'namespace="{ns}"', f'pod="{pod}"']
    return ",".join(labels)


def _step(gpu: Gpu, rng: random.Random) -> dict[str, float]:
    """Advance one GPU by one scrape and read its metrics."""
    target = gpu.load + rng.gauss(0, 0.08)
    gpu.util = min(1.0, max(0.0, 0.7 * gpu.util + 0.3 * target))
    fb_total, max_power, sm_max, mem_clock = MODELS[gpu.model]
    gpu.temp += (32 + 48 * gpu.util - gpu.temp) * 0.4 + rng.gauss(0, 0.5)
    fb_used = int(fb_total * min(0.98, 0.01 + gpu.load * 0.9 + rng.uniform(0, 0.03)))
    return {
        "DCGM_FI_DEV_GPU_UTIL": round(gpu.util * 100),
        "DCGM_FI_DEV_MEM_COPY_UTIL": round(gpu.util * 100 * rng.uniform(0.3, 0.7)),
        "DCGM_FI_DEV_FB_USED": fb_used,
        "DCGM_FI_DEV_FB_FREE": fb_total - fb_used,
        "DCGM_FI_DEV_GPU_TEMP": round(gpu.temp),
        "DCGM_FI_DEV_MEMORY_TEMP": round(gpu.temp + rng.uniform(2, 6)),
        "DCGM_FI_DEV_POWER_USAGE": round(max_power * (0.1 + 0.85 * gpu.util) + rng.gauss(0, 3), 3),
        "DCGM_FI_DEV_SM_CLOCK": sm_max if gpu.util > 0.05 else 345,
        "DCGM_FI_DEV_MEM_CLOCK": mem_clock,
        "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": round(gpu.util * rng.uniform(0.4, 0.8), 6),
    }


def samples(
    *, hosts: int, gpus_per_host: int, scrapes: int, start: datetime, interval: timedelta, seed: int
) -> Iterator[TelemetryRow]:
    """Rows in scrape order: every GPU's metrics at t0, then at t0+interval, ..."""
    if start.tzinfo is None:
        raise ValueError("start must carry a timezone")
    rng = random.Random(seed + 1)
    gpus = fleet(hosts, gpus_per_host, seed)
    for n in range(scrapes):
        ts = start + n * interval
        for gpu in gpus:
            values = _step(gpu, rng)
            container, pod, ns = gpu.job or (None, None, None)
            for metric in METRICS:
                yield TelemetryRow(
                    timestamp=ts,
                    metric_name=metric,
                    gpu_id=gpu.index,
                    device=f"nvidia{gpu.index}",
                    uuid=gpu.uuid,
                    model_name=gpu.model,
                    hostname=gpu.host,
                    container=container,
                    pod=pod,
                    namespace=ns,
                    value=float(values[metric]),
                    labels_raw=_labels(gpu),
                )
