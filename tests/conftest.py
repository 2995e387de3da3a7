"""Suite-wide fixtures: every test must leave no asyncio task behind."""

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

# Real-process fixtures (broker, operator, PostgreSQL, KEDA) shared by the functional and envtest
# tiers.
pytest_plugins = ["fixtures.brokers", "fixtures.operators", "fixtures.postgres", "fixtures.keda"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Quarantined tests failed in a full `make test` run while passing alone; they are
    skipped, with their reason shown by -ra, until FERRY_RUN_QUARANTINED=1 runs them and
    the flake is understood (docs/testing.md lists them)."""
    if os.environ.get("FERRY_RUN_QUARANTINED") == "1":
        return
    for item in items:
        mark = item.get_closest_marker("quarantine")
        if mark is not None:
            reason = mark.kwargs.get("reason") or (mark.args[0] if mark.args else "")
            item.add_marker(pytest.mark.skip(
                reason=f"quarantined: {reason} (FERRY_RUN_QUARANTINED=1 runs it)"))


@pytest.fixture(autouse=True)
async def _no_leaked_tasks() -> AsyncIterator[None]:
    before = asyncio.all_tasks()
    yield
    # Give tasks cancelled during teardown one turn of the loop to finish.
    await asyncio.sleep(0)
    me = asyncio.current_task()
    leaked = [t for t in asyncio.all_tasks() - before if t is not me and not t.done()]
    if leaked:
        for task in leaked:
            task.cancel()
        pytest.fail(f"test leaked {len(leaked)} asyncio task(s): {leaked!r}")
