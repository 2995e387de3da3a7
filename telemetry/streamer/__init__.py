"""Streamer: DCGM CSV files -> broker queue (validated, split, paced, resumable)."""
