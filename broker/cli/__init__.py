"""`ferry`: the user CLI for queues, groups, publishing, consuming and dead letters."""

from ferry.broker.cli.running import main

__all__ = ["main"]
