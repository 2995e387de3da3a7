"""Synthetic DCGM exporter CSV: realistic enough to exercise the pipeline and the API."""
