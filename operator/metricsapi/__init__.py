"""`ferry-metrics-api`: Ferry's External Metrics API server (queue lag for HPAs)."""
