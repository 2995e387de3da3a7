"""What the broker documents about its inputs matches what it enforces (issue 21)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ferry.broker.__main__ import read_tokens
from ferry.broker.bounds import table

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_the_documented_bounds_are_the_models_bounds() -> None:
    """The table is generated (`python -m ferry.broker.bounds`), never edited by hand."""
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
    text = "".join(p.read_text() for p in docs if p.exists())
    assert table() in text, "regenerate the bounds table: python -m ferry.broker.bounds"


def test_token_file_comments_may_be_indented(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("# operators\n  # rotated 2026-11: old-secret\n\tnew-secret  \n\n")
    assert set(read_tokens(str(path))) == {"new-secret"}
