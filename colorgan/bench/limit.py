"""Part ``limit``: the device's measured peak FLOP/s, which the step part's figures are fractions of."""

from __future__ import annotations

import torch

from colorgan.bench.common import median_seconds


def part_limit(device: torch.device, quick: bool, repeats: int) -> dict[str, float]:
    """The device's measured peak: the best of several large 3 x 3 convolutions, and a large matmul.

    The rate of one convolution depends on its shape and memory format (here 110-210 GFLOP/s in
    fp32 on the same CPU), so the limit is the best over a few shapes, NCHW and channels_last.
    """
    if quick:
        shapes = [(1, 64, 32)]
    elif device.type == "cpu":
        shapes = [(1, 512, 64), (2, 512, 32), (8, 256, 64), (8, 128, 128)]
    else:
        shapes = [(64, 256, 64), (32, 512, 64)]
    n = 512 if quick else (2048 if device.type == "cpu" else 8192)
    out: dict[str, float] = {}
    for dtype, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        best = 0.0
        for batch, channels, side in shapes:
            conv = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False).to(device, dtype)
            flops = 2 * batch * channels * channels * 9 * side * side
            for memory_format in (torch.contiguous_format, torch.channels_last):
                x = torch.randn(batch, channels, side, side, device=device, dtype=dtype)
                x, conv = x.contiguous(memory_format=memory_format), conv.to(memory_format=memory_format)
                with torch.no_grad():
                    seconds = median_seconds(lambda conv=conv, x=x: conv(x), device, repeats, warmup=1)
                best = max(best, flops / seconds / 1e9)
        out[f"conv3x3_{name}_gflops"] = best
        a = torch.randn(n, n, device=device, dtype=dtype)
        seconds = median_seconds(lambda a=a: a @ a, device, repeats, warmup=2)
        out[f"matmul_{name}_gflops"] = 2 * n**3 / seconds / 1e9
    return out


def best_of(*limits: dict[str, float]) -> dict[str, float]:
    """Key-wise maximum: the limit the device showed at its best during the run."""
    return {key: max(limit[key] for limit in limits) for key in limits[0]}
