"""Pure logic of the telemetry pipeline: row model, validation, dedup ids, splitting, pacing.

No I/O and no clock of its own: everything here is a function of its arguments.
"""
