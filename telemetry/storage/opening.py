"""Pick the engine from a URL: postgresql://... or sqlite:///path (a bare path means SQLite)."""

from __future__ import annotations

from ferry.telemetry.storage.base import Store
from ferry.telemetry.storage.postgres import PostgresStore
from ferry.telemetry.storage.sqlite import SqliteStore

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def store_for(url: str) -> Store:
    if url.startswith(POSTGRES_SCHEMES):
        return PostgresStore(url)
    if url.startswith("sqlite://"):
        path = url.removeprefix("sqlite://")
        if not path:
            raise ValueError(
                "sqlite:// URL needs a path, e.g. sqlite:///var/lib/ferry/telemetry.db"
            )
        return SqliteStore(path)
    if "://" in url:
        scheme = url.split("://", 1)[0]
        raise ValueError(f"unknown storage scheme {scheme!r}: use sqlite:///path or postgresql://")
    return SqliteStore(url)
