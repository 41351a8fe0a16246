"""Keep freed CPU memory in the process instead of handing it back to the OS after every step.

glibc serves every allocation above 32 MiB with its own ``mmap`` and unmaps it on free, so each
training step at 256 x 256 (activations of 64-256 MiB) faults in and zeroes gigabytes of fresh
pages. Raising the mmap and trim thresholds lets the heap reuse those pages: the fp32 U-Net 256
D + G step went from 1.05-1.39 to 1.62-1.82 images/s on a 2-core CPU (see bench/RESULTS.md).
The cost is that the process keeps its peak memory. ``COLORGAN_KEEP_FREED_MEMORY=0`` turns it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
THRESHOLD_BYTES = 1 << 30


def keep_freed_memory() -> bool:
    """Raise glibc's mmap/trim thresholds to 1 GiB; True when applied (Linux with glibc only)."""
    if os.environ.get("COLORGAN_KEEP_FREED_MEMORY", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return False
    applied = mallopt(M_MMAP_THRESHOLD, THRESHOLD_BYTES) == 1 and mallopt(M_TRIM_THRESHOLD, THRESHOLD_BYTES) == 1
    log.debug("glibc mmap/trim thresholds raised to %d bytes: %s", THRESHOLD_BYTES, applied)
    return applied
