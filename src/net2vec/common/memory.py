"""Keep the resident memory of streaming stages flat on glibc.

A training epoch allocates and frees many large, differently sized tensors (a batch's masks and
upsampled maps). glibc's malloc serves those from its heap and keeps the freed space, so the
peak RSS creeps up with the number of batches although nothing is held (measured: +105 MiB
going from 500 to 2,000 images, against +1.4 MiB with the setting below). Serving every block
of 64 KiB or more with its own mmap returns it to the system when freed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
LARGE_BLOCK = 64 << 10  # bytes


def return_large_buffers_to_os(threshold: int = LARGE_BLOCK) -> bool:
    """Ask glibc to mmap blocks ≥ `threshold` bytes; False where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(M_MMAP_THRESHOLD, int(threshold)))
    except (OSError, AttributeError, TypeError):
        log.debug("mallopt not available (%s): memory stays with the allocator", name)
        return False
