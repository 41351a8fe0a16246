"""The precision ``trainer.precision=auto`` stands for on the machine in use: measured, cached per machine."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from colorgan.files import write_text_atomic

log = logging.getLogger(__name__)


# ``trainer.precision=auto`` is the faster of fp32 and bf16-mixed on the machine in use, measured.
#
# A CPU flag says only that bf16 *can* run natively, not that it is faster: on the AMD EPYC (Zen 4)
# this project is developed on, bf16-mixed trained 1.4-2.5x faster than fp32, while on an Intel Xeon
# with AVX512-BF16 and no AMX the bf16 3 x 3 convolution ran at 181 GFLOP/s against fp32's 342 and
# the training steps were 18-30% slower in bf16. So on a CPU ``auto`` times a few forward + backward
# passes of a small stack of the U-Net's middle layers (stride-2 4 x 4 convolutions and transposed
# convolutions with BatchNorm) in fp32 and under bf16 autocast, NCHW and channels_last, about a
# second in all, and takes bf16-mixed only when it is clearly faster (``BF16_MIN_SPEEDUP``). Without
# avx512_bf16 or amx_bf16 bf16 is emulated and slow, so fp32 is chosen with nothing timed.
#
# The figures are cached per machine in ``$COLORGAN_CACHE_DIR/precision.json`` (default
# ``~/.cache/colorgan``) and logged with the choice. On a GPU ``auto`` is bf16-mixed where the GPU
# supports bf16, else 32-true. The Lab conversion and the losses stay float32 either way.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
CACHE_DIR_ENV = "COLORGAN_CACHE_DIR"
REMEASURE_ENV = "COLORGAN_PRECISION_REMEASURE"
BF16_MIN_SPEEDUP = 1.10  # bf16-mixed must be this much faster than fp32, else fp32 (exact, no autocast)
# (name, precision, channels_last): the names are the benchmark's step variants (colorgan.bench)
CANDIDATES = (
    ("fp32", "32-true", False),
    ("channels_last", "32-true", True),
    ("bf16-mixed", "bf16-mixed", False),
    ("bf16-mixed+channels_last", "bf16-mixed", True),
)


@dataclass
class PrecisionChoice:
    """What ``auto`` chose on this machine, and the figures why."""

    precision: str
    reason: str
    source: str  # "measured", "cache", "no native bf16", "gpu", "other accelerator"
    seconds: dict[str, float] = field(default_factory=dict)  # per pass of the micro-benchmark, by candidate
    key: str | None = None  # the machine, as the cache knows it
    measured_at: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def read_cpuinfo(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, frozenset[str]]:
    """(model name, flags) of the first CPU listed; ("", {}) where there is no /proc/cpuinfo."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return "", frozenset()
    model, flags = "", frozenset()
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "model name" and not model:
            model = value.strip()
        elif name.strip() in ("flags", "Features") and not flags:
            flags = frozenset(value.split())
    return model, flags


def _probe_stack() -> torch.nn.Module:
    """The U-Net's middle layers in small: two stride-2 4 x 4 convolutions down, two transposed up."""
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(64, 128, 4, 2, 1, bias=False),
        nn.BatchNorm2d(128),
        nn.LeakyReLU(0.2),
        nn.Conv2d(128, 256, 4, 2, 1, bias=False),
        nn.BatchNorm2d(256),
        nn.LeakyReLU(0.2),
        nn.ConvTranspose2d(256, 128, 4, 2, 1, bias=False),
        nn.BatchNorm2d(128),
        nn.ReLU(),
        nn.ConvTranspose2d(128, 64, 4, 2, 1, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(),
    )


@torch.random.fork_rng(devices=[])  # leaves the run's seeded RNG state as it was
def time_candidates(names: list[str], rounds: int = 3, batch: int = 8, side: int = 32) -> dict[str, float]:
    """Seconds per forward + backward pass of ``_probe_stack`` for each candidate: the best of ``rounds``
    interleaved rounds after one untimed pass each (about 6 GFLOP a pass; ~1 s in all on 2 cores)."""
    spec = {name: (precision, channels_last) for name, precision, channels_last in CANDIDATES}
    torch.manual_seed(0)
    x0 = torch.randn(batch, 64, side, side)
    nets, inputs = {}, {}
    for name in names:
        fmt = torch.channels_last if spec[name][1] else torch.contiguous_format
        torch.manual_seed(0)
        nets[name] = _probe_stack().to(memory_format=fmt)
        inputs[name] = x0.contiguous(memory_format=fmt)

    def one_pass(name: str) -> float:
        net, x = nets[name], inputs[name]
        net.zero_grad(set_to_none=True)
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=spec[name][0] == "bf16-mixed"):
            out = net(x)
        out.float().square().mean().backward()
        return time.perf_counter() - start

    for name in names:
        one_pass(name)  # oneDNN builds its kernels on the first call
    best = {name: float("inf") for name in names}
    for _ in range(rounds):
        for name in names:
            best[name] = min(best[name], one_pass(name))
    return best


def decide(seconds: dict[str, float], channels_last: bool | None = None) -> tuple[str, str]:
    """(precision, reason) from measured seconds: bf16-mixed only when >= ``BF16_MIN_SPEEDUP`` x faster.

    ``channels_last`` compares the memory format the model uses; None compares each precision's best.
    """

    def best(precision: str) -> tuple[str, float] | None:
        rows = [
            (name, seconds[name])
            for name, p, cl in CANDIDATES
            if p == precision and name in seconds and (channels_last is None or cl == channels_last)
        ]
        return min(rows, key=lambda r: r[1]) if rows else None

    fp32, bf16 = best("32-true"), best("bf16-mixed")
    if fp32 is None:
        raise ValueError(f"no fp32 timing among {sorted(seconds)}")
    if bf16 is None:
        return "32-true", f"{fp32[0]} {fp32[1] * 1e3:.1f} ms per pass; bf16 not timed"
    speedup = fp32[1] / bf16[1]
    figures = (
        f"{bf16[0]} {bf16[1] * 1e3:.1f} ms vs {fp32[0]} {fp32[1] * 1e3:.1f} ms per pass: "
        f"bf16 {speedup:.2f}x the fp32 speed"
    )
    if speedup >= BF16_MIN_SPEEDUP:
        return "bf16-mixed", f"{figures} (>= {BF16_MIN_SPEEDUP:.2f}x needed)"
    return "32-true", f"{figures} (< {BF16_MIN_SPEEDUP:.2f}x needed for bf16)"


def cache_path() -> Path:
    return Path(os.environ.get(CACHE_DIR_ENV) or Path.home() / ".cache" / "colorgan").expanduser() / "precision.json"


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, key: str, entry: dict[str, Any]) -> None:
    """Add ``entry`` under ``key``, atomically; an unwritable place only costs a measurement next time."""
    try:
        write_text_atomic(path, json.dumps({**_read_cache(path), key: entry}, indent=2, sort_keys=True))
    except OSError as err:
        log.debug("precision cache %s not written: %s", path, err)


def choose_cpu_precision(
    channels_last: bool | None = None,
    timer: Callable[[list[str]], dict[str, float]] | None = None,
    cpuinfo: Path = Path("/proc/cpuinfo"),
    cache: Path | None = None,
    remeasure: bool | None = None,
) -> PrecisionChoice:
    """The precision ``auto`` stands for on this CPU, measured once per machine and then cached.

    ``timer`` (default ``time_candidates``) maps candidate names to seconds per pass; ``remeasure``
    (default: ``$COLORGAN_PRECISION_REMEASURE`` set to 1) ignores the cache and measures again.
    """
    model, flags = read_cpuinfo(cpuinfo)
    if not any(flag in flags for flag in NATIVE_BF16_FLAGS):
        return PrecisionChoice("32-true", "the CPU has no native bf16 (avx512_bf16, amx_bf16): fp32", "no native bf16")
    # what the cached figures belong to: CPU model, its flags, torch version and thread count
    digest = hashlib.sha256(" ".join(sorted(flags)).encode()).hexdigest()[:12]
    key = f"{model or 'unknown CPU'} | flags {digest} | torch {torch.__version__} | {torch.get_num_threads()} threads"
    path = cache or cache_path()
    if remeasure is None:
        remeasure = os.environ.get(REMEASURE_ENV, "") not in ("", "0")
    entry = None if remeasure else _read_cache(path).get(key)
    names = [name for name, _, _ in CANDIDATES]
    if isinstance(entry, dict) and set(names) <= set(entry.get("seconds", {})):
        seconds, source, measured_at = {n: float(entry["seconds"][n]) for n in names}, "cache", entry.get("measured_at")
    else:
        seconds, source = (timer or time_candidates)(names), "measured"
        measured_at = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        _write_cache(path, key, {"seconds": seconds, "measured_at": measured_at})
    precision, reason = decide(seconds, channels_last)
    return PrecisionChoice(precision, reason, source, seconds, key, measured_at)


def choose_precision(accelerator: str, channels_last: bool | None = None, **cpu_kwargs: Any) -> PrecisionChoice:
    """What ``auto`` stands for with ``trainer.accelerator``, and why."""
    wants_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if wants_gpu:
        bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        why = "the GPU supports bf16" if bf16 else "no bf16 on this GPU"
        return PrecisionChoice("bf16-mixed" if bf16 else "32-true", why, "gpu")
    if accelerator in ("cpu", "auto"):
        return choose_cpu_precision(channels_last, **cpu_kwargs)
    return PrecisionChoice("32-true", f"accelerator={accelerator}: fp32", "other accelerator")


def resolve_precision(precision: str, accelerator: str, channels_last: bool | None = None) -> str:
    """``precision`` as Lightning takes it; ``auto`` is chosen here (see above) and logged."""
    if str(precision) != "auto":
        return str(precision)
    choice = choose_precision(str(accelerator), channels_last)
    where = {"measured": "measured now", "cache": f"measured {choice.measured_at}, cached"}.get(choice.source)
    log.info(
        "trainer.precision=auto -> %s on accelerator=%s: %s%s",
        choice.precision,
        accelerator,
        choice.reason,
        f" ({where} in {cache_path()} for {choice.key})" if where else "",
    )
    return choice.precision
