"""``trainer.precision=auto``: bf16-mixed where the hardware computes in bf16 natively, else fp32.

On a CPU with AVX512-BF16 or AMX, bf16-mixed measured 1.4-2.5x faster than fp32 for every model
and one CIFAR-10 epoch scored as well (bench/RESULTS.md, README). Without those instructions bf16
is emulated and slower, so fp32 stays. The Lab conversion and the losses stay float32 either way.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

log = logging.getLogger(__name__)

NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True when the CPU advertises bf16 arithmetic (Linux; elsewhere False, i.e. fp32)."""
    try:
        flags = set(cpuinfo.read_text().split())
    except OSError:
        return False
    return any(flag in flags for flag in NATIVE_BF16_FLAGS)


def auto_precision(accelerator: str) -> str:
    """The precision ``auto`` stands for on this machine, for ``trainer.accelerator``."""
    wants_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if wants_gpu:
        return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "32-true"
    if accelerator in ("cpu", "auto"):
        return "bf16-mixed" if cpu_has_native_bf16() else "32-true"
    return "32-true"


def resolve_precision(precision: str, accelerator: str) -> str:
    if str(precision) != "auto":
        return str(precision)
    chosen = auto_precision(str(accelerator))
    log.info("trainer.precision=auto -> %s on accelerator=%s", chosen, accelerator)
    return chosen
