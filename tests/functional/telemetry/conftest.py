"""Telemetry fixtures: a fresh store per test, on SQLite or on the session's PostgreSQL
(fixtures/postgres.py)."""

from __future__ import annotations

import csv
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fixtures.postgres import fresh_database

from ferry.telemetry.parsing.rows import TelemetryRow, column_positions, parse_record, record_of
from ferry.telemetry.storage.base import Store
from ferry.telemetry.storage.opening import store_for

ENGINES = ["sqlite", "postgresql"]


@pytest.fixture(params=ENGINES)
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'telemetry.db'}"
    return await fresh_database(request.getfixturevalue("postgres"))


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    async with store_for(store_url) as s:
        yield s


DATA = Path(__file__).resolve().parents[3] / "examples" / "data"


@pytest.fixture(scope="session")
def sample_rows() -> list[TelemetryRow]:
    """The committed sample, parsed (every row of it is valid)."""
    with (DATA / "dcgm_sample.csv").open(newline="") as f:
        reader = csv.reader(f)
        pos = column_positions(next(reader))
        return [parse_record(record_of(fields, pos)) for fields in reader]


@pytest.fixture
async def pg_url(postgres: str) -> str:
    """A fresh, empty database on the session's cluster."""
    return await fresh_database(postgres)
