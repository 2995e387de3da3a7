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

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter numbers (malloc.h)
THRESHOLD = 1 << 20


def release_large_buffers() -> bool:
    """Fix glibc's mmap threshold; False where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(M_MMAP_THRESHOLD, THRESHOLD))
    except (OSError, AttributeError):
        return False
