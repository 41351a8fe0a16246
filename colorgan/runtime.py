"""Where and how computation runs: the device to use and the process's memory allocator."""

from __future__ import annotations

import torch


class DeviceUnavailable(ValueError):
    """A device was asked for that this machine does not have."""


def pick_device(name: str = "auto", key: str = "--device") -> torch.device:
    """``auto`` is CUDA when present, else the CPU; a CUDA device asked for on a machine without one is refused."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable(f"{key} {name}: CUDA is not available on this machine; use {key} cpu or auto")
    return device
