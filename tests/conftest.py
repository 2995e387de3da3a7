"""Suite-wide fixtures: every test must leave no asyncio task behind."""

import asyncio
from collections.abc import AsyncIterator

import pytest

# Real-process fixtures (broker, operator, PostgreSQL, KEDA, the process kubelet) shared by
# the functional and envtest tiers.
pytest_plugins = ["fixtures.brokers", "fixtures.operators", "fixtures.postgres", "fixtures.keda",
                  "fixtures.kubelets"]


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
