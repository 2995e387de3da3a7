"""SQL text shared by both engines; only the parameter style differs (`?` vs `$n`)."""

from __future__ import annotations

from collections.abc import Callable

from ferry.telemetry.storage.records import SAMPLE_COLUMNS, SampleQuery

Placeholder = Callable[[int], str]  # 1-based parameter number -> its marker


def qmark(_: int) -> str:
    return "?"


def dollar(n: int) -> str:
    return f"${n}"


GPU_COLUMNS = "uuid, hostname, model_name, gpu_index, device, first_seen_us, last_seen_us"


def insert_samples(p: Placeholder) -> str:
    marks = ", ".join(p(i + 1) for i in range(len(SAMPLE_COLUMNS)))
    cols = ", ".join(SAMPLE_COLUMNS)
    return f"INSERT INTO telemetry_samples ({cols}) VALUES ({marks}) ON CONFLICT DO NOTHING"


def upsert_gpu(p: Placeholder, greatest: str, least: str) -> str:
    """Metadata follows the newest sample; first/last seen only ever widen."""
    newer = "excluded.last_seen_us >= telemetry_gpus.last_seen_us"
    follow = ", ".join(
        f"{c} = CASE WHEN {newer} THEN excluded.{c} ELSE telemetry_gpus.{c} END"
        for c in ("hostname", "model_name", "gpu_index", "device")
    )
    return (
        f"INSERT INTO telemetry_gpus ({GPU_COLUMNS})"
        f" VALUES ({', '.join(p(i) for i in range(1, 8))})"
        f" ON CONFLICT (uuid) DO UPDATE SET {follow},"
        f" first_seen_us = {least}(telemetry_gpus.first_seen_us, excluded.first_seen_us),"
        f" last_seen_us = {greatest}(telemetry_gpus.last_seen_us, excluded.last_seen_us)"
    )


def select_gpus(where: str = "") -> str:
    return f"SELECT {GPU_COLUMNS} FROM telemetry_gpus {where} ORDER BY hostname, gpu_index, uuid"


def select_samples(q: SampleQuery, p: Placeholder) -> tuple[str, list[object]]:
    args: list[object] = [q.gpu_uuid]
    where = [f"gpu_uuid = {p(1)}"]

    def arg(value: object) -> str:
        args.append(value)
        return p(len(args))

    if q.metric is not None:
        where.append(f"metric_name = {arg(q.metric)}")
    if q.start_us is not None:
        where.append(f"ts_us >= {arg(q.start_us)}")
    if q.end_us is not None:
        where.append(f"ts_us < {arg(q.end_us)}")
    if q.after is not None:
        # Spelled out rather than a row-value comparison so both planners use the index;
        # one parameter per marker, as `?` markers cannot be reused.
        later, same, rid = arg(q.after.ts_us), arg(q.after.ts_us), arg(q.after.row_id)
        where.append(f"(ts_us > {later} OR (ts_us = {same} AND row_id > {rid}))")
    sql = (
        f"SELECT {', '.join(SAMPLE_COLUMNS)} FROM telemetry_samples"
        f" WHERE {' AND '.join(where)} ORDER BY ts_us, row_id LIMIT {arg(q.limit)}"
    )
    return sql, args
