"""Performance benchmark: every figure is a median after warm-up, next to a baseline from the same run.

    python -m colorgan.bench                      # all parts, sizes for a CPU
    python -m colorgan.bench --parts lab,step     # some parts
    python -m colorgan.bench --quick              # tiny settings (what the tests run)

Writes ``bench/results.json`` and ``bench/RESULTS.md`` (hardware, versions, date) and prints the tables.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, Trainer
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode

from colorgan.color import rgb_to_lab_normalized
from colorgan.data.datamodule import ColorizationDataModule, DeviceBatches
from colorgan.data.datasets import FolderDataset, TensorImageDataset
from colorgan.data.images import find_images
from colorgan.module import ColorizationModule
from colorgan.runtime import BF16_MIN_SPEEDUP, CANDIDATES, choose_precision, keep_freed_memory, resolve_precision

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("limit", "lab", "step", "data", "epoch", "infer")


# ----------------------------------------------------------------------------- helpers
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


# ------------------------------------------------------------------------------ limit
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


# -------------------------------------------------------------------------------- lab
class SkimageLabDataset(Dataset):
    """The official pix2pix colorization dataset's way: scikit-image ``rgb2lab`` per image."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        from skimage.color import rgb2lab

        lab = rgb2lab(self.images[index]).astype(np.float32)
        lab_t = torch.from_numpy(lab).permute(2, 0, 1)
        return lab_t[:1] / 50.0 - 1.0, lab_t[1:] / 110.0


def part_lab(device: torch.device, quick: bool, repeats: int, compile_lab: bool) -> list[dict[str, Any]]:
    from kornia.color import rgb_to_lab
    from skimage.color import rgb2lab

    rows = []
    for size, batch in ((32, 256), (256, 64)) if not quick else ((32, 16), (64, 4)):
        images = smooth_uint8_images(batch, size, device)
        host = images.permute(0, 2, 3, 1).cpu().numpy()
        dataset = SkimageLabDataset(host)
        base = median_seconds(lambda ds=dataset: [ds[i] for i in range(len(ds))], torch.device("cpu"), repeats, 1)
        reference = torch.from_numpy(np.stack([rgb2lab(im) for im in host[:8]])).permute(0, 3, 1, 2).float()

        def max_error(L: torch.Tensor, ab: torch.Tensor, reference: torch.Tensor = reference) -> float:
            lab = torch.cat([(L[:8].cpu() + 1) * 50, ab[:8].cpu() * 110], 1)
            return float((lab - reference).abs().max())

        candidates: list[tuple[str, Callable[[], Any]]] = [
            ("kornia rgb_to_lab (batched)", lambda images=images: rgb_to_lab(images.float() / 255.0)),
            ("colorgan (batched, uint8 table)", lambda images=images: rgb_to_lab_normalized(images)),
        ]
        if compile_lab:
            rgb_to_lab_normalized(images, compiled=True)  # compile outside the timing
            compiled = lambda images=images: rgb_to_lab_normalized(images, compiled=True)
            candidates.append(("colorgan + torch.compile", compiled))
        rows.append(
            {
                "size": size,
                "batch": batch,
                "method": "scikit-image rgb2lab per image in a Dataset (baseline)",
                "images_per_s": batch / base,
                "ratio": 1.0,
                "max_error_lab": 0.0,
            }
        )
        for name, fn in candidates:
            seconds = median_seconds(fn, device, repeats, warmup=1)
            result = fn()
            if isinstance(result, torch.Tensor):  # kornia returns Lab itself
                result = (result[:, :1] / 50.0 - 1.0, result[:, 1:] / 110.0)
            rows.append(
                {
                    "size": size,
                    "batch": batch,
                    "method": name,
                    "images_per_s": batch / seconds,
                    "ratio": base / seconds,
                    "max_error_lab": max_error(*result),
                }
            )
    return rows


# ------------------------------------------------------------------------------- step
class SyntheticData(ColorizationDataModule):
    """Device-resident photo-like images: isolates the training step from any data cost."""

    def __init__(self, size: int, batch_size: int, batches: int, device: torch.device) -> None:
        super().__init__(batch_size=batch_size, image_size=size)
        self.images = smooth_uint8_images(batch_size * min(batches, 4), size, device)
        self.labels = torch.zeros(len(self.images), dtype=torch.long, device=device)
        self.batches = batches

    def train_dataloader(self) -> Any:
        repeat = -(-self.batches // (len(self.images) // self.batch_size))
        images = self.images.repeat(repeat, 1, 1, 1)
        return DeviceBatches(images, self.labels.repeat(repeat), self.batch_size, shuffle=False, drop_last=True)


class StepTimer(Callback):
    """Times each training step (D + G, the module's own code) and counts FLOPs on the first."""

    def __init__(self, device: torch.device, count_flops: bool) -> None:
        self.device, self.count_flops = device, count_flops
        self.times: list[float] = []
        self.flops_per_batch: int | None = None
        self._counter: FlopCounterMode | None = None

    def on_train_batch_start(self, trainer: Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if batch_idx == 0 and self.count_flops:
            self._counter = FlopCounterMode(display=False)
            self._counter.__enter__()
        synchronize(self.device)
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        synchronize(self.device)
        self.times.append(time.perf_counter() - self._start)
        if self._counter is not None:
            self._counter.__exit__(None, None, None)
            self.flops_per_batch = self._counter.get_total_flops()
            self._counter = None


STEP_MODELS: dict[str, dict[str, Any]] = {
    "cifar_unet32": {
        "size": 32,
        "batch": 128,
        "generator": {"name": "unet", "image_size": 32},
        "discriminator": {"name": "patchgan", "n_layers": 2},
    },
    "unet256": {
        "size": 256,
        "batch": 16,
        "generator": {"name": "unet", "image_size": 256},
        "discriminator": {"name": "patchgan", "n_layers": 3},
    },
    "resnet18_unet256": {
        "size": 256,
        "batch": 16,
        "generator": {"name": "resnet18_unet", "image_size": 256},
        "discriminator": {"name": "patchgan", "n_layers": 3},
    },
}
STEP_VARIANTS: dict[str, dict[str, Any]] = {
    "fp32": {"precision": "32-true"},
    "channels_last": {"precision": "32-true", "channels_last": True},
    "bf16-mixed": {"precision": "bf16-mixed"},
    "bf16-mixed+channels_last": {"precision": "bf16-mixed", "channels_last": True},
    "compile": {"precision": "32-true", "compile": True},
    "compile+channels_last": {"precision": "32-true", "compile": True, "channels_last": True},
}


def time_training_steps(
    spec: dict[str, Any], variant: dict[str, Any], device: torch.device, steps: int, count_flops: bool
) -> tuple[list[float], int | None]:
    """(seconds of each D + G step after one warm-up step, FLOPs per batch) through a real Trainer.fit."""
    model = ColorizationModule(
        generator=spec["generator"],
        discriminator=spec["discriminator"],
        lambda_gan=1.0,
        channels_last=variant.get("channels_last", False),
        compile=variant.get("compile", False),
    )
    # the first two steps of a fresh model are warm-up: the second still ran 15-20% slower than the
    # third at 256 x 256 (fresh pages, oneDNN primitives for the frozen-D backward of the G step)
    warmup = 3 if variant.get("compile") else 2
    batches = warmup + steps
    timer = StepTimer(device, count_flops)
    trainer = Trainer(
        accelerator=device.type,
        devices=1,
        precision=variant["precision"],
        max_epochs=1,
        limit_train_batches=batches,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(model, datamodule=SyntheticData(spec["size"], spec["batch"], batches, device))
    return timer.times[warmup:], timer.flops_per_batch


def part_step(
    device: torch.device, quick: bool, repeats: int, models: list[str], variants: list[str]
) -> list[dict[str, Any]]:
    """Each model's variants are timed in interleaved rounds (A, B, C, A, B, C, ...).

    A shared CPU drifts by 20% and more over minutes; timing one variant after the other lets
    that drift decide the ratio, while interleaving spreads it over every variant alike. Each
    round is a fresh ``Trainer.fit`` with two warm-up steps; the figure is the median of all rounds.
    """
    rows = []
    for name in models:
        spec = dict(STEP_MODELS[name])
        if quick:
            spec.update(
                size=32,
                batch=4,
                generator={
                    **spec["generator"],
                    "image_size": 32,
                    **({"ngf": 8} if spec["generator"]["name"] == "unet" else {}),
                },
                discriminator={**spec["discriminator"], "n_layers": 2, "ndf": 8},
            )
        steps_per_round = 1 if spec["size"] >= 128 else 3
        times: dict[str, list[float]] = {v: [] for v in variants}
        flops_per_image = None
        for _ in range(repeats):
            for variant_name in variants:
                step_times, flops = time_training_steps(
                    spec, STEP_VARIANTS[variant_name], device, steps_per_round, count_flops=flops_per_image is None
                )
                times[variant_name] += step_times
                if flops is not None:
                    flops_per_image = flops / spec["batch"]
        baseline = None
        for variant_name in variants:
            images_per_s = spec["batch"] / statistics.median(times[variant_name])
            baseline = baseline or images_per_s
            achieved = flops_per_image * images_per_s / 1e9 if flops_per_image else None
            rows.append(
                {
                    "model": name,
                    "size": spec["size"],
                    "batch": spec["batch"],
                    "variant": variant_name,
                    "images_per_s": images_per_s,
                    "ratio_vs_fp32": images_per_s / baseline,
                    "timed_steps": len(times[variant_name]),
                    "gflop_per_image": flops_per_image / 1e9 if flops_per_image else None,
                    "achieved_gflops": achieved,
                }
            )
            print(f"  step {name:>17} {variant_name:<26} {images_per_s:8.2f} img/s", flush=True)
    return rows


def add_peak_fractions(rows: list[dict[str, Any]], limit: dict[str, float]) -> None:
    """Achieved FLOP/s as a fraction of the measured fp32 (and, for bf16 variants, bf16) conv limit."""
    peak, peak_bf16 = limit.get("conv3x3_fp32_gflops"), limit.get("conv3x3_bf16_gflops")
    for row in rows:
        achieved = row.get("achieved_gflops")
        row["fraction_of_fp32_conv_peak"] = achieved / peak if achieved and peak else None
        bf16 = "bf16" in row["variant"]
        row["fraction_of_bf16_conv_peak"] = achieved / peak_bf16 if achieved and peak_bf16 and bf16 else None


def best_of(*limits: dict[str, float]) -> dict[str, float]:
    """Key-wise maximum: the limit the device showed at its best during the run."""
    return {key: max(limit[key] for limit in limits) for key in limits[0]}


# ------------------------------------------------------------------------------- data
def delivery_rate(loader: Any, device: torch.device, batches: int) -> float:
    """Images/s that a loader hands to the step: fetch, move to the device, convert to Lab."""
    count, start = 0, None
    for i, batch in enumerate(loader):
        if i == 1:  # the first batch pays for worker start-up
            synchronize(device)
            start, count = time.perf_counter(), 0
        rgb = batch["rgb"].to(device, non_blocking=True)
        rgb_to_lab_normalized(rgb)
        count += len(rgb)
        if i >= batches:
            break
    synchronize(device)
    return count / (time.perf_counter() - start) if start else float("nan")


def load_cifar_or_synthetic(data_dir: Path | None, quick: bool) -> tuple[torch.Tensor, str]:
    path = data_dir / "cifar10" / "train.npz" if data_dir else None
    if path is not None and path.is_file() and not quick:
        with np.load(path) as npz:
            return torch.from_numpy(npz["images"]).permute(0, 3, 1, 2).contiguous(), str(path)
    return smooth_uint8_images(512 if quick else 50000, 32, torch.device("cpu")), "synthetic 32 x 32"


def fastest_step(step_rows: list[dict[str, Any]], model: str) -> float | None:
    """The most demanding consumer: the fastest measured step variant of that model."""
    return max((r["images_per_s"] for r in step_rows if r["model"] == model), default=None)


def part_data(
    device: torch.device, quick: bool, data_dir: Path | None, workers: int, step_rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    rows = []
    cifar, source = load_cifar_or_synthetic(data_dir, quick)
    batches = 8 if quick else 100
    batch = 16 if quick else 128
    labels = torch.zeros(len(cifar), dtype=torch.long)
    on_device = DeviceBatches(cifar.to(device), labels.to(device), batch, shuffle=True, flip=True, drop_last=True)
    loader = DataLoader(TensorImageDataset(cifar, labels, flip=True), batch_size=batch, shuffle=True, drop_last=True)
    step_rate = fastest_step(step_rows, "cifar_unet32")
    for name, it in (("cifar10 on_device=true (default)", on_device), ("cifar10 DataLoader, per-item", loader)):
        rate = delivery_rate(it, device, batches)
        rows.append(
            {
                "data": name,
                "source": source,
                "batch": batch,
                "images_per_s": rate,
                "step_images_per_s": step_rate,
                "data_over_step": rate / step_rate if step_rate else None,
            }
        )

    folder_root = data_dir / "photos256" / "train" if data_dir else None
    tmp = None
    if quick or folder_root is None or not folder_root.is_dir():
        from PIL import Image

        tmp = tempfile.TemporaryDirectory()
        folder_root = Path(tmp.name)
        for i, image in enumerate(smooth_uint8_images(16 if quick else 64, 256, torch.device("cpu"))):
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder_root / f"{i}.jpg", quality=90)
    files = find_images(folder_root)
    size = 64 if quick else 256
    step_rate = fastest_step(step_rows, "unet256")
    fbatch = 4 if quick else 16
    fbatches = 3 if quick else max(4, min(20, len(files) // fbatch - 1))
    for n_workers in sorted({0, workers}):
        dataset = FolderDataset(files, image_size=size, load_size=round(size * 286 / 256), train=True)
        loader = DataLoader(
            dataset, batch_size=fbatch, shuffle=True, drop_last=True, num_workers=n_workers, persistent_workers=False
        )
        rate = delivery_rate(loader, device, fbatches)
        rows.append(
            {
                "data": f"folder, {n_workers} workers",
                "source": str(folder_root) if not tmp else "synthetic JPEGs",
                "batch": fbatch,
                "images_per_s": rate,
                "step_images_per_s": step_rate,
                "data_over_step": rate / step_rate if step_rate else None,
            }
        )
    if tmp is not None:
        tmp.cleanup()
    return rows


# -------------------------------------------------------------------------- precision
def default_channels_last() -> bool:
    return bool(OmegaConf.load(ROOT / "conf" / "model" / "pix2pix.yaml").get("channels_last", False))


def part_default_precision(device: torch.device, **cpu_kwargs: Any) -> dict[str, Any]:
    """What ``trainer.precision=auto`` chooses here and the figures why, measured afresh (which also
    refreshes the cache ``train.py`` reads)."""
    accelerator = "cpu" if device.type == "cpu" else "gpu"
    kwargs = {"remeasure": True, **cpu_kwargs} if accelerator == "cpu" else {}
    choice = choose_precision(accelerator, channels_last=default_channels_last(), **kwargs)
    return choice.as_dict()


def default_precision_rows(choice: dict[str, Any], step_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The micro-benchmark's figures per candidate and, where the step part timed both precisions in
    the model's memory format, whether the real D + G steps agree with the choice."""
    seconds = choice.get("seconds") or {}
    rows: list[dict[str, Any]] = []
    for name, _, channels_last in CANDIDATES:
        if name in seconds:
            fp32 = seconds.get("channels_last" if channels_last else "fp32")
            rows.append(
                {
                    "timed": "micro-benchmark (auto's measurement)",
                    "variant": name,
                    "ms_per_pass": seconds[name] * 1e3,
                    "speed_vs_fp32_same_format": fp32 / seconds[name] if fp32 else None,
                }
            )
    channels_last = default_channels_last()
    fp32_name, bf16_name = ("channels_last", "bf16-mixed+channels_last") if channels_last else ("fp32", "bf16-mixed")
    for model in dict.fromkeys(r["model"] for r in step_rows):
        rates = {r["variant"]: r.get("images_per_s") for r in step_rows if r["model"] == model}
        if rates.get(fp32_name) and rates.get(bf16_name):
            rows.append(
                {
                    "timed": f"D + G step, {model} (images/s)",
                    "variant": bf16_name,
                    "ms_per_pass": None,
                    "speed_vs_fp32_same_format": rates[bf16_name] / rates[fp32_name],
                }
            )
    return rows


def default_precision_text(choice: dict[str, Any]) -> str:
    source = {
        "measured": f"measured in this run, {choice.get('measured_at')}",
        "cache": f"cached from {choice.get('measured_at')}",
    }.get(choice["source"], choice["source"])
    return f"`trainer.precision=auto` -> **{choice['precision']}**: {choice['reason']} ({source})."


# ------------------------------------------------------------------------------ epoch
def default_step_variant(device: torch.device) -> str:
    """The step variant ``train.py`` runs with the shipped defaults (precision auto, model.channels_last)."""
    channels_last = default_channels_last()
    precision = resolve_precision("auto", "cpu" if device.type == "cpu" else "gpu", channels_last=channels_last)
    name = "fp32" if precision == "32-true" else precision
    if channels_last:
        name = "channels_last" if name == "fp32" else f"{name}+channels_last"
    return name


def part_epoch(
    device: torch.device, quick: bool, data_dir: Path | None, fraction: float, step_rows: list[dict[str, Any]]
) -> dict[str, Any]:
    """A real ``train.py`` epoch (GAN stage, CIFAR-10, default precision and memory format) against the
    step-only time of the same variant for the same batches."""
    batch = 128
    variant = default_step_variant(device)
    with tempfile.TemporaryDirectory() as out:
        overrides = [
            "experiment=cifar_gan",
            "trainer.max_epochs=1",
            f"trainer.limit_train_batches={fraction}",
            "trainer.limit_val_batches=0",
            "trainer.num_sanity_val_steps=0",
            f"data.batch_size={batch}",
            f"trainer.accelerator={'cpu' if device.type == 'cpu' else 'gpu'}",
            f"hydra.run.dir={out}",
        ]
        if data_dir:
            overrides.append(f"paths.data_dir={data_dir}")
        if quick:
            overrides += ["model.generator.ngf=8", "model.discriminator.ndf=8"]
            overrides += ["data.batch_size=16", "data.val_size=16"]
            batch = 16
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, str(ROOT / "train.py"), *overrides],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"train.py failed for the epoch benchmark:\n{proc.stderr[-3000:]}")
        process_s = time.perf_counter() - start
        summary = json.loads((Path(out) / "summary.json").read_text())
    epoch_s = summary["last_train_epoch_s"]
    images = summary["train_images_per_sec"]
    n_batches = round(45000 * fraction / batch) if not quick else None
    step = next((r for r in step_rows if r["model"] == "cifar_unet32" and r["variant"] == variant), None)
    step_only_s = n_batches * batch / step["images_per_s"] if (step and n_batches and not quick) else None
    return {
        "experiment": "cifar_gan",
        "variant": variant,
        "fraction_of_epoch": fraction,
        "batch": batch,
        "batches": n_batches,
        "epoch_wall_s": epoch_s,
        "process_wall_s": process_s,
        "images_per_s_inside_steps": images,
        "step_only_s": step_only_s,
        "overhead": epoch_s / step_only_s - 1 if step_only_s else None,
        "full_epoch_minutes_estimate": epoch_s / fraction / 60,
    }


# ------------------------------------------------------------------------------ infer
def part_infer(device: torch.device, quick: bool, repeats: int) -> list[dict[str, Any]]:
    """Colorizing one 2048 x 1536 photo with a 256-px U-Net, in full and tiles mode."""
    from PIL import Image

    from colorgan.inference import colorize_image
    from colorgan.models import UNetGenerator

    width, height = (256, 192) if quick else (2048, 1536)
    generator = UNetGenerator(image_size=256, ngf=8 if quick else 64).to(device).eval()
    photo = smooth_uint8_images(1, max(width, height), torch.device("cpu"))[0, :, :height, :width]
    image = Image.fromarray(photo.permute(1, 2, 0).numpy())
    rows = []
    for mode in ("full", "tiles"):
        seconds = median_seconds(
            lambda mode=mode: colorize_image(generator, image, size=256, mode=mode),
            device,
            repeats=max(1, repeats // 2),
            warmup=1,
        )
        rows.append({"mode": mode, "width": width, "height": height, "seconds": seconds})
    rows.append(
        {
            "mode": "ratio tiles/full",
            "width": width,
            "height": height,
            "seconds": rows[1]["seconds"] / rows[0]["seconds"],
        }
    )
    return rows


# ----------------------------------------------------------------------------- report
def markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "_(not run)_\n"
    keys = list(rows[0])

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r.get(k)) for k in keys) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def limit_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    if not results.get("limit"):
        return []
    measured = results.get("limit_measurements", [])
    when = ["before the steps", "after the steps"]
    return [{"measured": w, **m} for w, m in zip(when, measured)] + [{"measured": "used (best)", **results["limit"]}]


def write_report(results: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=2))
    tmp.replace(out_dir / "results.json")
    hw = results["hardware"]
    md = [
        "# colorgan benchmark",
        "",
        f"{hw['date']} · {hw.get('gpu') or hw['cpu']} · {hw['cpu_threads']} threads · torch {hw['torch']} · "
        f"lightning {hw['lightning']} · `{results['command']}`",
        "",
        "Every figure is a median over repeats after warm-up; ratios are against the baseline measured in the same "
        "run. Training-step variants are timed in interleaved rounds, so that the drift of a shared machine "
        "falls on all of them alike.",
        "",
    ]
    sections = [
        ("Device limit (GFLOP/s; measured before and after the steps; fractions use the best)", limit_rows(results)),
        (
            "Lab conversion (baseline: scikit-image per image, as pix2pix's colorization dataset)",
            results.get("lab", []),
        ),
        ("Training step, D + G (LightningModule code path)", results.get("step", [])),
        ("Data delivery (images/s handed to the step, Lab conversion included)", results.get("data", [])),
        ("Whole epoch through train.py", [results["epoch"]] if results.get("epoch") else []),
        ("Colorizing a photo", results.get("infer", [])),
    ]
    if results.get("default_precision"):
        choice = results["default_precision"]
        md += [
            "## Default precision (`trainer.precision=auto`, chosen by a short measurement on this machine)",
            "",
            default_precision_text(choice),
            "",
        ]
        if choice.get("seconds"):
            md += [
                "The micro-benchmark is the best of 3 interleaved forward + backward passes of a small stack of "
                "the U-Net's middle layers; bf16-mixed is chosen when it is at least "
                f"{BF16_MIN_SPEEDUP:.2f}x as fast as fp32 in the model's memory format.",
                "",
            ]
        rows = default_precision_rows(choice, results.get("step", []))
        md += [markdown_table(rows)] if rows else []
    for title, rows in sections:
        if rows:
            md += [f"## {title}", "", markdown_table(rows)]
    text = "\n".join(md)
    (out_dir / "RESULTS.md").write_text(text)
    print(text)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--models", default=",".join(STEP_MODELS), help="training-step models")
    parser.add_argument("--variants", default=",".join(STEP_VARIANTS), help="training-step variants")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that everything runs")
    parser.add_argument("--compile-lab", action="store_true", help="also time the torch.compile'd conversion")
    parser.add_argument("--epoch-fraction", type=float, default=0.25, help="share of a CIFAR-10 epoch to run")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--data-dir", default=os.environ.get("COLORGAN_DATA_DIR", str(ROOT / "data")))
    parser.add_argument("--out", default=str(ROOT / "bench"))
    args = parser.parse_args(argv)
    keep_freed_memory()  # as train.py does

    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    parts = [p for p in args.parts.split(",") if p]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s) {sorted(unknown)}; choose from {','.join(PARTS)}")
    repeats = 2 if args.quick else args.repeats
    data_dir = Path(args.data_dir).expanduser() if args.data_dir else None
    results: dict[str, Any] = {
        "hardware": hardware(device),
        "command": "python -m colorgan.bench " + " ".join(argv or sys.argv[1:]),
        "default_precision": part_default_precision(device),  # about a second on a CPU
    }
    if "limit" in parts:
        results["limit"] = part_limit(device, args.quick, repeats)
    if "lab" in parts:
        results["lab"] = part_lab(device, args.quick, repeats, args.compile_lab)
    if "step" in parts:
        models = ["cifar_unet32"] if args.quick else args.models.split(",")
        variants = ["fp32", "channels_last"] if args.quick else args.variants.split(",")
        results["step"] = part_step(device, args.quick, repeats, models, variants)
        if "limit" in parts:  # again after the long step part: the fractions use the better of the two
            results["limit_measurements"] = [results["limit"], part_limit(device, args.quick, repeats)]
            results["limit"] = best_of(*results["limit_measurements"])
        add_peak_fractions(results["step"], results.get("limit", {}))
    if "data" in parts:
        results["data"] = part_data(device, args.quick, data_dir, args.workers, results.get("step", []))
    if "epoch" in parts:
        results["epoch"] = part_epoch(device, args.quick, data_dir, args.epoch_fraction, results.get("step", []))
    if "infer" in parts:
        results["infer"] = part_infer(device, args.quick, repeats)
    write_report(results, Path(args.out))
    return results


if __name__ == "__main__":
    main()
