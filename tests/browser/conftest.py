"""The browser tier: Debian's chromium (installed by `make browser`) driven by Playwright.

Playwright comes from PyPI and drives the system's chromium through `executable_path`:
no browser download (the machines reach package registries only).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, async_playwright

# Where Debian puts it; FERRY_CHROMIUM points elsewhere.
CHROMIUM = os.environ.get("FERRY_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"no chromium at {CHROMIUM}: `make browser` installs Debian's")
    async with async_playwright() as p:
        # --no-sandbox: CI runs as root, where chromium's sandbox refuses to start.
        b = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            await b.close()
