"""Ferry's service kit: what every Ferry program shares (logs, flags, serving, health).

A leaf package: it imports no other Ferry package (import-linter checks it), so the
broker, the operator and the telemetry services can all depend on it.
"""
