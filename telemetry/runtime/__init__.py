"""Command-line pieces the telemetry services share (the rest of their plumbing is ferry.kit)."""
