"""Ferry telemetry pipeline: DCGM CSV streamer, competing collectors, GPU telemetry API."""
