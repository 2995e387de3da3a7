"""Collector: broker queue -> storage, as competing consumers of one group."""
