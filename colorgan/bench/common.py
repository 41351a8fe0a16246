"""What every part of the benchmark shares: the repository root, timing, test images, the machine description."""

from __future__ import annotations

import datetime as dt
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[2]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int) -> float:
    """Median wall time of ``fn`` over ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def smooth_uint8_images(n: int, size: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    """Photo-like test images (smooth colour fields, not noise), uint8 N x 3 x H x W."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, max(2, size // 8), max(2, size // 8), generator=g)
    images = torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).to(device)


def accelerator(device: torch.device) -> str:
    """Lightning's and ``train.py``'s name for the device: ``cpu``, else ``gpu``."""
    return "cpu" if device.type == "cpu" else "gpu"


def load_size(crop: int) -> int:
    """The side photos are resized to before a random ``crop``, as pix2pix does (286 for 256)."""
    return round(crop * 286 / 256)


def hardware(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "device": str(device),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    try:
        model = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in line)
        info["cpu"] = model.split(":", 1)[1].strip()
    except (OSError, StopIteration):
        info["cpu"] = platform.processor()
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    import lightning

    info["lightning"] = lightning.__version__
    return info
