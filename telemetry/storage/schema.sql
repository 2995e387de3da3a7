-- One schema for both engines (SQLite and PostgreSQL accept every type used here).
-- Idempotency: row_id is derived from the row's content, message_id is the broker's;
-- a write that repeats either is ignored, so redeliveries and replays never duplicate.
CREATE TABLE IF NOT EXISTS telemetry_samples (
    row_id       TEXT PRIMARY KEY,
    message_id   TEXT NOT NULL UNIQUE,
    gpu_uuid     TEXT NOT NULL,
    metric_name  TEXT NOT NULL,
    ts_us        BIGINT NOT NULL,
    value        DOUBLE PRECISION NOT NULL,
    gpu_index    INTEGER NOT NULL,
    device       TEXT NOT NULL,
    model_name   TEXT NOT NULL,
    hostname     TEXT NOT NULL,
    container    TEXT,
    pod          TEXT,
    namespace    TEXT,
    labels_raw   TEXT NOT NULL,
    stored_at_us BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS telemetry_samples_by_gpu
    ON telemetry_samples (gpu_uuid, ts_us, row_id);
CREATE INDEX IF NOT EXISTS telemetry_samples_by_gpu_metric
    ON telemetry_samples (gpu_uuid, metric_name, ts_us, row_id);
CREATE TABLE IF NOT EXISTS telemetry_gpus (
    uuid         TEXT PRIMARY KEY,
    hostname     TEXT NOT NULL,
    model_name   TEXT NOT NULL,
    gpu_index    INTEGER NOT NULL,
    device       TEXT NOT NULL,
    first_seen_us BIGINT NOT NULL,
    last_seen_us BIGINT NOT NULL
);
