"""The broker's allocator settings (ferry.broker.malloc), in a fresh interpreter each."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

# Allocates and frees a 512 KiB buffer (a batch of 4 KiB bodies) 100 times; prints the page
# faults that took.
_CYCLES = """
import resource
from ferry.broker.malloc import release_large_buffers
assert release_large_buffers()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(100):
    buf = b"x" * (512 * 1024)
    del buf
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_freed_batch_buffer_is_reused_without_faulting_its_pages_in_again() -> None:
    out = subprocess.run([sys.executable, "-c", _CYCLES], check=True, capture_output=True,
                         text=True).stdout
    pages = 512 * 1024 // 4096
    # The first buffer faults its pages in once; trimming the heap after each free made
    # later ones fault again (695 faults here before the trim threshold was set).
    assert int(out) < 2 * pages
