"""Framing on the pipes between the broker and its committer: a length, then marshal data.

marshal is the cheapest serialization CPython has for the plain tuples, ints,
strings and bytes that `Writes` are made of, and both ends are the same
interpreter, so its version-specific format is no concern.
"""

from __future__ import annotations

import marshal
import struct
from typing import Any

_HEADER = struct.Struct("<I")


def encode(obj: Any) -> bytes:
    data = marshal.dumps(obj)
    return _HEADER.pack(len(data)) + data


class Decoder:
    """Whole frames out of a byte stream that arrives in arbitrary pieces."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        buf = self._buf
        buf += data
        out: list[Any] = []
        pos, size = 0, len(buf)
        while size - pos >= _HEADER.size:
            (n,) = _HEADER.unpack_from(buf, pos)
            end = pos + _HEADER.size + n
            if end > size:
                break
            out.append(marshal.loads(bytes(buf[pos + _HEADER.size:end])))
            pos = end
        del buf[:pos]
        return out
