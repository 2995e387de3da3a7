"""Frames between the broker and its committer: any split of the byte stream decodes alike."""

from __future__ import annotations

import random

import pytest

from ferry.broker.store.frames import Decoder, encode

pytestmark = pytest.mark.unit


def test_frames_cut_anywhere_come_out_whole_and_in_order() -> None:
    rng = random.Random(5)
    objs = [[(5, [(i, 0, 0, 1, None, None, b"x" * rng.choice((0, 10, 5000, 400_000)))])]
            for i in range(40)]
    stream = b"".join(encode(o) for o in objs)
    for _ in range(20):
        decoder, got, pos = Decoder(), [], 0
        while pos < len(stream):
            step = rng.choice((1, 3, 4, 5, 100, 65_536, 1 << 20))
            got += decoder.feed(stream[pos:pos + step])
            pos += step
        assert got == objs
    assert Decoder().feed(stream) == objs  # all at once


def test_frames_read_through_one_reused_buffer_keep_their_content() -> None:
    """The committer reads every chunk into the same buffer: what a frame decoded to must
    not change when the buffer is overwritten by the next read."""
    objs = [[(5, [(i, 0, 0, 1, None, None, bytes([i]) * 3000)])] for i in range(30)]
    stream = b"".join(encode(o) for o in objs)
    buf = bytearray(7000)
    decoder, got, pos = Decoder(), [], 0
    while pos < len(stream):
        n = len(stream[pos:pos + len(buf)])
        buf[:n] = stream[pos:pos + n]
        got += decoder.feed(memoryview(buf)[:n])
        buf[:] = b"\xff" * len(buf)  # the next read overwrites it
        pos += n
    assert got == objs
