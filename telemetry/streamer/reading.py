"""Reading DCGM CSV input: a file or a directory of *.csv files, record by record."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from ferry.telemetry.parsing.rows import HeaderError, column_positions


class InputError(Exception):
    """The input cannot be read at all (missing, empty directory, not DCGM CSV)."""


class Record(NamedTuple):  # a tuple: one is made per record, a dataclass costs 3x
    number: int  # 1-based data record number within its file (the header is not counted)
    fields: list[str]


def input_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.glob("*.csv") if p.is_file())
        if not files:
            raise InputError(f"{path}: directory holds no *.csv files")
        return files
    if path.is_file():
        return [path]
    raise InputError(f"{path}: no such file or directory")


class CsvFile:
    """One input file: its header checked on open, records streamed (never all in memory)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with path.open(newline="") as f:
                header = next(csv.reader(f), None)
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise InputError(f"{path}: {e}") from e
        if header is None:
            raise InputError(f"{path}: empty file (no CSV header)")
        try:
            self.positions = column_positions(header)
        except HeaderError as e:
            raise InputError(f"{path}: {e}") from e

    def records(self) -> Iterator[Record]:
        try:
            with self.path.open(newline="") as f:
                reader = csv.reader(f)
                next(reader)
                for n, fields in enumerate(reader, 1):
                    if fields:  # a blank line is not a record
                        yield Record(n, fields)
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise InputError(f"{self.path}: {e}") from e
