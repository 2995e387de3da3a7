"""The console's static files: the vendored ones are unchanged, the page loads nothing from
elsewhere, and every file it names is one the broker serves."""

from __future__ import annotations

import hashlib
import re
from importlib import resources

import pytest

from ferry.broker.transport import console

pytestmark = pytest.mark.unit

FOLDER = resources.files("ferry.broker.console")


def test_vendored_files_match_their_recorded_checksums() -> None:
    note = FOLDER.joinpath("VENDORED.md").read_text()
    recorded = dict((name, digest) for digest, name in
                    re.findall(r"^\s+([0-9a-f]{64})\s+(\S+)$", note, re.MULTILINE))
    assert set(recorded) == {"uPlot.iife.min.js", "uPlot.min.css", "uPlot.LICENSE.txt"}
    for name, digest in recorded.items():
        assert hashlib.sha256(FOLDER.joinpath(name).read_bytes()).hexdigest() == digest, name


def test_the_page_loads_only_files_the_broker_serves() -> None:
    page = FOLDER.joinpath(console.INDEX).read_text()
    named = set(re.findall(r'(?:src|href)="([^"]+)"', page))
    assert named == set(console.FILES) - {console.INDEX}
    for name in console.FILES:
        text = FOLDER.joinpath(name).read_text()
        assert not re.search(r"\b(?:src|href)=\"(?:https?:)?//", text), name  # no CDN
