"""Pure reconcilers: CR spec and observed state in, desired manifests and status out.

No I/O and no clock of their own (time is passed in), so every rule is unit-testable.
"""
