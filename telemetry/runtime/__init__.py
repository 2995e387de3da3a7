"""Process plumbing shared by the telemetry services: logs, signals, /metrics and /healthz."""
