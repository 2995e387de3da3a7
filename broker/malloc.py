"""Give large freed buffers back to the kernel at once.

glibc raises its mmap threshold each time a large mmapped block is freed (up to 32 MiB), so
after the first few big message bodies later ones come from the heap and stay in RSS after
they are freed: the memory test's broker peaked between 445 and 512 MiB from run to run
with the same load. A fixed threshold keeps every buffer of 1 MiB or more in its own
mapping, returned to the kernel when freed.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers (malloc.h)
THRESHOLD = 1 << 20
# Fixing the mmap threshold also stops glibc raising its trim threshold (128 KiB), so each
# freed buffer of a few hundred KiB at the top of the heap (a batch of 4 KiB bodies) went
# back to the kernel and the next one faulted its pages in again: 3.4 page faults per
# message end to end at 4 KiB (bench/README.md). Free space up to this stays in the heap.
TRIM = 8 << 20


def release_large_buffers() -> bool:
    """Fix glibc's mmap threshold; False where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(M_MMAP_THRESHOLD, THRESHOLD)
                    and libc.mallopt(M_TRIM_THRESHOLD, TRIM))
    except (OSError, AttributeError):
        return False
