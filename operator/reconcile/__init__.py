"""Pure reconcilers: CR spec and observed state in, desired manifests and status out."""
