"""Opaque page cursors: the keyset position of the last item, base64url JSON."""

from __future__ import annotations

import base64
import binascii
import json

from ferry.telemetry.storage.records import Position


class CursorError(ValueError):
    pass


def encode(pos: Position) -> str:
    raw = json.dumps([pos.ts_us, pos.row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode(cursor: str) -> Position:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        ts_us, row_id = json.loads(raw)
        if not isinstance(ts_us, int) or not isinstance(row_id, str):
            raise TypeError
        return Position(ts_us=ts_us, row_id=row_id)
    except (binascii.Error, ValueError, TypeError) as e:
        raise CursorError("cursor is not one this API returned") from e
