"""Where computation runs: the device asked for, and the process's memory allocator."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

import torch

from colorgan.errors import ColorganError

log = logging.getLogger(__name__)


class DeviceUnavailable(ColorganError, ValueError):
    """A device was asked for that this machine does not have."""


def pick_device(name: str = "auto", key: str = "--device") -> torch.device:
    """``auto`` is CUDA when present, else the CPU; a CUDA device asked for on a machine without one is refused."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable(f"{key} {name}: CUDA is not available on this machine; use {key} cpu or auto")
    return device


M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
THRESHOLD_BYTES = 1 << 30


def keep_freed_memory() -> bool:
    """Keep freed CPU memory in the process instead of handing it back to the OS after every step.

    glibc serves every allocation above 32 MiB with its own ``mmap`` and unmaps it on free, so each
    training step at 256 x 256 (activations of 64-256 MiB) faults in and zeroes gigabytes of fresh
    pages. Raising glibc's mmap and trim thresholds to 1 GiB lets the heap reuse those pages: the fp32
    U-Net 256 D + G step went from 1.05-1.39 to 1.62-1.82 images/s on a 2-core CPU (see
    bench/RESULTS.md). The cost is that the process keeps its peak memory. True when applied (Linux
    with glibc only); ``COLORGAN_KEEP_FREED_MEMORY=0`` turns it off.
    """
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
