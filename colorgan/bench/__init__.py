"""Performance benchmark: every figure is a median after warm-up, next to a baseline from the same run.

    python -m colorgan.bench                      # all parts, sizes for a CPU
    python -m colorgan.bench --parts lab,step     # some parts
    python -m colorgan.bench --quick              # tiny settings (what the tests run)

Writes ``bench/results.json`` and ``bench/RESULTS.md`` (hardware, versions, date) and prints the tables.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
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
from colorgan.data.datamodule import ColorizationDataModule
from colorgan.data.datasets import TensorImageDataset
from colorgan.data.device_batches import DeviceBatches
from colorgan.data.images import find_images
from colorgan.files import write_text_atomic
from colorgan.markdown import markdown_table
from colorgan.precision import BF16_MIN_SPEEDUP, CANDIDATES, choose_precision, resolve_precision
from colorgan.runtime import keep_freed_memory, pick_device
from colorgan.train.module import ColorizationModule

ROOT = Path(__file__).resolve().parents[2]
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
    device: torch.device,
    quick: bool,
    repeats: int,
    models: list[str],
    variants: list[str],
    batch: int | None = None,
) -> list[dict[str, Any]]:
    """Each model's variants are timed in interleaved rounds (A, B, C, A, B, C, ...).

    A shared CPU drifts by 20% and more over minutes; timing one variant after the other lets
    that drift decide the ratio, while interleaving spreads it over every variant alike. Each
    round is a fresh ``Trainer.fit`` with two warm-up steps; the figure is the median of all rounds.
    """
    rows = []
    for name in models:
        spec = dict(STEP_MODELS[name], **({"batch": batch} if batch else {}))
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
    """Achieved FLOP/s as a fraction of the measured fp32 (and, for bf16 variants, bf16) conv limit, and of the
    bf16 matmul rate (a GPU's headline figure)."""
    peak, peak_bf16 = limit.get("conv3x3_fp32_gflops"), limit.get("conv3x3_bf16_gflops")
    matmul_bf16 = limit.get("matmul_bf16_gflops")
    for row in rows:
        achieved = row.get("achieved_gflops")
        row["fraction_of_fp32_conv_peak"] = achieved / peak if achieved and peak else None
        bf16 = "bf16" in row["variant"]
        row["fraction_of_bf16_conv_peak"] = achieved / peak_bf16 if achieved and peak_bf16 and bf16 else None
        row["fraction_of_bf16_matmul"] = achieved / matmul_bf16 if achieved and matmul_bf16 and bf16 else None


def best_of(*limits: dict[str, float]) -> dict[str, float]:
    """Key-wise maximum: the limit the device showed at its best during the run."""
    return {key: max(limit[key] for limit in limits) for key in limits[0]}


# ------------------------------------------------------------------------------- data
def delivery_rate(loader: Any, device: torch.device, batches: int, finish: Callable[[dict], torch.Tensor]) -> float:
    """Images/s that a loader hands to the step: fetch, move to the device, then ``finish`` the batch there
    (the data module's ``on_after_batch_transfer``: decoding where it happens on the device, Lab conversion)."""
    count, start = 0, None
    for i, batch in enumerate(loader):
        if i == 1:  # the first batch pays for worker start-up
            synchronize(device)
            start, count = time.perf_counter(), 0
        batch = {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        count += len(finish(batch))
        if i >= batches:
            break
    synchronize(device)
    return count / (time.perf_counter() - start) if start else float("nan")


def to_lab(batch: dict[str, Any]) -> torch.Tensor:
    return rgb_to_lab_normalized(batch["rgb"])[0]


def load_cifar_or_synthetic(data_dir: Path | None, quick: bool) -> tuple[torch.Tensor, str]:
    path = data_dir / "cifar10" / "train.npz" if data_dir else None
    if path is not None and path.is_file() and not quick:
        with np.load(path) as npz:
            return torch.from_numpy(npz["images"]).permute(0, 3, 1, 2).contiguous(), str(path)
    return smooth_uint8_images(512 if quick else 50000, 32, torch.device("cpu")), "synthetic 32 x 32"


def fastest_step(step_rows: list[dict[str, Any]], model: str) -> float | None:
    """The most demanding consumer: the fastest measured step variant of that model."""
    return max((r["images_per_s"] for r in step_rows if r["model"] == model), default=None)


def synthetic_photo_folder(root: Path, n: int) -> Path:
    """train/ and val/ of photo-like 256 x 256 JPEGs, for machines without photos256."""
    from PIL import Image

    for split, count in (("train", n), ("val", max(2, n // 8))):
        (root / split).mkdir(parents=True)
        for i, image in enumerate(smooth_uint8_images(count, 256, torch.device("cpu"), seed=len(split))):
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(root / split / f"{i}.jpg", quality=92)
    return root


@contextlib.contextmanager
def torch_threads(n: int) -> Any:
    saved = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def step_inputs(module: Any) -> dict[str, Callable[[dict], torch.Tensor]]:
    """How far a batch on the device is taken: to uint8 RGB (shards on a GPU decode here) or on to Lab."""
    decoded = getattr(module, "decoded", lambda batch: batch)
    return {"rgb": lambda b: decoded(b)["rgb"], "lab": lambda b: module.on_after_batch_transfer(b, 0)["L"]}


def photo_loaders(
    folder_root: Path, shards_root: Path, size: int, batch: int, workers: int, device: torch.device
) -> dict[str, tuple[Any, Any]]:
    """The train split of the same photos through data=folder and data=shards, as (data module, loader)."""
    from colorgan.data.folder import FolderDataModule
    from colorgan.data.shards import ShardsDataModule

    common = {"image_size": size, "batch_size": batch, "num_workers": workers}
    decode = "device" if device.type == "cuda" else "workers"
    modules = {
        f"folder, {workers} workers": FolderDataModule(root=str(folder_root), **common),
        f"shards, {workers} workers": ShardsDataModule(root=str(shards_root), decode=decode, **common),
    }
    for module in modules.values():
        module.setup("fit")
    return {name: (module, module.train_dataloader()) for name, module in modules.items()}


def part_data(
    device: torch.device,
    quick: bool,
    data_dir: Path | None,
    workers: int,
    step_rows: list[dict[str, Any]],
    rounds: int,
) -> list[dict[str, Any]]:
    """CIFAR-10 batches, then photos: the folder loader against prepared shards of the same train split.

    Each photo loader is timed twice: to uint8 RGB on the device (the data path itself: for shards on
    a GPU that includes the nvJPEG decode) and to Lab (what the step receives; on a CPU the conversion
    competes with the loader workers for the cores). With 0 workers the loading process works alone on
    one thread, as a loader worker does: that row is the rate per worker. Loaders are timed in
    interleaved rounds.
    """
    from colorgan.data.prepare import prepare

    rows = []
    cifar, source = load_cifar_or_synthetic(data_dir, quick)
    batches = 8 if quick else 100
    batch = 16 if quick else 128
    labels = torch.zeros(len(cifar), dtype=torch.long)
    on_device = DeviceBatches(cifar.to(device), labels.to(device), batch, shuffle=True, flip=True, drop_last=True)
    loader = DataLoader(TensorImageDataset(cifar, labels, flip=True), batch_size=batch, shuffle=True, drop_last=True)
    step_rate = fastest_step(step_rows, "cifar_unet32")
    for name, it in (("cifar10 on_device=true (default)", on_device), ("cifar10 DataLoader, per-item", loader)):
        rate = delivery_rate(it, device, batches, to_lab)
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

    photos = data_dir / "photos256" if data_dir else None
    size = 64 if quick else 256
    with tempfile.TemporaryDirectory() as tmp:
        if quick or photos is None or not (photos / "train").is_dir():
            sources = {"synthetic JPEGs": synthetic_photo_folder(Path(tmp) / "photos", 24 if quick else 200)}
        else:
            sources = {str(photos): photos}
        if not quick:  # the folder loader's cost grows with the originals; a prepared shard's does not
            name, folder = next(iter(sources.items()))
            sources[f"{name} enlarged to 640 x 480"] = enlarged_photo_folder(folder, Path(tmp) / "vga", (640, 480))
        for n, (source, folder) in enumerate(sources.items()):
            shards = Path(tmp) / f"shards{n}"
            with contextlib.redirect_stderr(io.StringIO()):  # preparation's progress bars
                prepare(folder, shards, size=round(size * 286 / 256), workers=workers)
            rows += photo_rows(folder, shards, source, device, size, workers, step_rows, rounds, quick)
    return rows


def enlarged_photo_folder(source: Path, out: Path, size: tuple[int, int]) -> Path:
    """Up to 240 train and 16 val photos of ``source`` as ``size`` JPEGs (quality 92): camera-like sizes."""
    from PIL import Image

    for split, limit in (("train", 240), ("val", 16)):
        (out / split).mkdir(parents=True)
        for path in find_images(source / split)[:limit]:
            Image.open(path).convert("RGB").resize(size, Image.Resampling.BICUBIC).save(
                out / split / path.name, quality=92
            )
    return out


def photo_rows(
    photos: Path,
    shards: Path,
    source: str,
    device: torch.device,
    size: int,
    workers: int,
    step_rows: list[dict[str, Any]],
    rounds: int,
    quick: bool,
) -> list[dict[str, Any]]:
    """The folder loader and the shards of the same photos, with 0 and ``workers`` workers, interleaved."""
    fbatch = 4 if quick else 16
    n_train = json.loads((shards / "prepared.json").read_text())["splits"]["train"]["images"]
    fbatches = 3 if quick else max(4, min(20, n_train // fbatch - 1))
    rates: dict[tuple[str, str], list[float]] = {}
    for _ in range(rounds):
        for n_workers in sorted({0, workers}):
            # 0 workers: the loading process alone, on one thread as a loader worker runs: the rate per worker
            with torch_threads(1) if n_workers == 0 else contextlib.nullcontext():
                for name, (module, loader) in photo_loaders(photos, shards, size, fbatch, n_workers, device).items():
                    for what, finish in step_inputs(module).items():
                        rates.setdefault((name, what), []).append(delivery_rate(loader, device, fbatches, finish))
    step_rate = fastest_step(step_rows, "unet256")
    rows = []
    for n_workers in sorted({0, workers}):
        folder = {w: statistics.median(rates[(f"folder, {n_workers} workers", w)]) for w in ("rgb", "lab")}
        for kind in ("folder", "shards"):
            rate = {w: statistics.median(rates[(f"{kind}, {n_workers} workers", w)]) for w in ("rgb", "lab")}
            rows.append(
                {
                    "data": f"{kind}, {n_workers} workers",
                    "source": source,
                    "batch": fbatch,
                    "images_per_s": rate["lab"],
                    "step_images_per_s": step_rate,
                    "data_over_step": rate["lab"] / step_rate if step_rate else None,
                    "rgb_images_per_s": rate["rgb"],
                    "vs_folder_rgb": rate["rgb"] / folder["rgb"],
                    "vs_folder_lab": rate["lab"] / folder["lab"],
                }
            )
    return rows


# ------------------------------------------------------------------------------- peer
PEER_VARIANTS = ("fp32", "bf16-mixed", "default")


@contextlib.contextmanager
def peer_imports(peer_dir: Path, argv: list[str]) -> Any:
    """The peer checkout importable (its top-level ``models``, ``options``, ``data``, ``util``), its CLI in argv."""
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.path.insert(0, str(peer_dir))
    sys.argv = ["train.py", *argv]
    try:
        yield
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path


def build_peer(peer_dir: Path, batch: int, size: int, ngf: int, ndf: int, workdir: str) -> Any:
    """The official pix2pix ``--model colorization`` (netG unet_256, PatchGAN), built by its own option parser."""
    argv = ["--dataroot", workdir, "--checkpoints_dir", workdir, "--model", "colorization", "--netG", "unet_256"]
    argv += ["--batch_size", str(batch), "--crop_size", str(size), "--load_size", str(round(size * 286 / 256))]
    argv += ["--ngf", str(ngf), "--ndf", str(ndf)]
    with peer_imports(peer_dir, argv), contextlib.redirect_stdout(io.StringIO()):
        from models import create_model  # the peer's
        from options.train_options import TrainOptions

        opt = TrainOptions().gather_options()
        opt.isTrain, opt.device = True, torch.device("cpu")
        model = create_model(opt)
    model.netG.cpu(), model.netD.cpu()  # it moves them to cuda:0 whenever CUDA exists; this comparison is on the CPU
    return model


def time_peer_steps(model: Any, bf16: bool, steps: int) -> list[float]:
    """Seconds of each ``optimize_parameters`` (D + G) after one warm-up; bf16-mixed is Lightning's: autocast."""
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    times = []
    with autocast:
        for i in range(steps + 1):
            start = time.perf_counter()
            model.optimize_parameters()
            if i:
                times.append(time.perf_counter() - start)
    return times


def part_peer(peer_dir: Path, quick: bool, rounds: int) -> dict[str, Any]:
    """colorgan's D + G step against the official pix2pix colorization model's, same batch and image size, on
    the CPU, in interleaved rounds (colorgan variant, peer, next variant, ...). The peer has one mode, fp32 in
    NCHW, its default; its bf16-mixed is its step under ``torch.autocast(bfloat16)``, as Lightning runs ours."""
    spec = dict(STEP_MODELS["unet256"])
    ngf, ndf = (8, 8) if quick else (64, 64)
    if quick:
        spec.update(
            batch=1, generator={**spec["generator"], "ngf": ngf}, discriminator={**spec["discriminator"], "ndf": ndf}
        )
    cpu = torch.device("cpu")
    ours = {"fp32": "fp32", "bf16-mixed": "bf16-mixed", "default": default_step_variant(cpu)}
    with tempfile.TemporaryDirectory() as workdir:
        model = build_peer(peer_dir, spec["batch"], spec["size"], ngf, ndf, workdir)
        L, ab = rgb_to_lab_normalized(smooth_uint8_images(spec["batch"], spec["size"], cpu))
        model.set_input({"A": L, "B": ab, "A_paths": [], "B_paths": []})
        times: dict[str, dict[str, list[float]]] = {v: {"colorgan": [], "peer": []} for v in PEER_VARIANTS}
        for _ in range(rounds):
            for variant in PEER_VARIANTS:
                times[variant]["colorgan"] += time_training_steps(spec, STEP_VARIANTS[ours[variant]], cpu, 1, False)[0]
                times[variant]["peer"] += time_peer_steps(model, variant == "bf16-mixed", 1)
    rows = []
    for variant in PEER_VARIANTS:
        rate = {who: spec["batch"] / statistics.median(t) for who, t in times[variant].items()}
        rows.append(
            {
                "variant": variant,
                "colorgan_runs": ours[variant],
                "peer_runs": "fp32 (its default)" if variant == "default" else variant,
                "colorgan_images_per_s": rate["colorgan"],
                "peer_images_per_s": rate["peer"],
                "colorgan_over_peer": rate["colorgan"] / rate["peer"],
                "timed_steps_each": len(times[variant]["peer"]),
            }
        )
        print(f"  peer {variant:<11} colorgan / peer = {rows[-1]['colorgan_over_peer']:.2f}", flush=True)
    return {
        "peer_dir": str(peer_dir),
        "commit": peer_commit(peer_dir),
        "size": spec["size"],
        "batch": spec["batch"],
        "rows": rows,
    }


def peer_commit(peer_dir: Path) -> str | None:
    proc = subprocess.run(["git", "-C", str(peer_dir), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return proc.stdout.strip() or None


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
def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return "" if value is None else str(value)


def table(rows: list[dict[str, Any]]) -> str:
    """Rows of dicts as a Markdown table; the columns are every key any row has, in order of appearance."""
    keys = list(dict.fromkeys(k for row in rows for k in row))
    return markdown_table(keys, [[fmt(row.get(k)) for k in keys] for row in rows])


def limit_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    if not results.get("limit"):
        return []
    measured = results.get("limit_measurements", [])
    when = ["before the steps", "after the steps"]
    return [{"measured": w, **m} for w, m in zip(when, measured)] + [{"measured": "used (best)", **results["limit"]}]


def shards_summary(rows: list[dict[str, Any]]) -> list[str]:
    """One sentence per worker count: how much faster prepared shards feed the step than the folder loader."""
    lines = []
    for row in (r for r in rows if r["data"].startswith("shards")):
        workers = row["data"].split(", ")[1]
        per_worker = " (per worker: one process, one thread)" if workers == "0 workers" else ""
        lines.append(
            f"- {row['source']}, {workers}{per_worker}: shards deliver **{row['vs_folder_rgb']:.2f}x** the folder "
            f"loader's images/s as uint8 RGB on the device, {row['vs_folder_lab']:.2f}x with the Lab conversion."
        )
    return ["## Shards against the folder loader (same photos, same workers)", "", *lines, ""] if lines else []


def peer_section(peer: dict[str, Any] | None) -> list[str]:
    if not peer:
        return []
    commit = f" at commit {peer['commit']}" if peer.get("commit") else ""
    return [
        "## colorgan against the official pix2pix (`--model colorization`, CPU)",
        "",
        f"D + G step of its `optimize_parameters` ({peer['peer_dir']}{commit}; netG unet_256, PatchGAN, options "
        f"from its own parser) against colorgan's, batch {peer['batch']} at {peer['size']} x {peer['size']}, "
        "timed in interleaved rounds. The peer runs fp32 NCHW by default; its bf16-mixed row is its step under "
        "`torch.autocast(bfloat16)`, which is what Lightning's bf16-mixed does for colorgan.",
        "",
        table(peer["rows"]),
    ]


def write_report(results: dict[str, Any], out_dir: Path) -> None:
    write_text_atomic(out_dir / "results.json", json.dumps(results, indent=2))
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
        (
            "Data delivery (images/s handed to the step: `images_per_s` with the Lab conversion, "
            "`rgb_images_per_s` the uint8 RGB on the device before it; `vs_folder_*`: shards / folder loader "
            "with the same workers on the same photos)",
            results.get("data", []),
        ),
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
        md += [table(rows)] if rows else []
    for title, rows in sections:
        if rows:
            md += [f"## {title}", "", table(rows)]
    md += shards_summary(results.get("data", [])) + peer_section(results.get("peer"))
    text = "\n".join(md)
    write_text_atomic(out_dir / "RESULTS.md", text)
    print(text)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--models", default=",".join(STEP_MODELS), help="training-step models")
    parser.add_argument("--variants", default=",".join(STEP_VARIANTS), help="training-step variants")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--step-batch", type=int, default=None, help="batch of the timed steps (default: per model)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that everything runs")
    parser.add_argument("--compile-lab", action="store_true", help="also time the torch.compile'd conversion")
    parser.add_argument("--epoch-fraction", type=float, default=0.25, help="share of a CIFAR-10 epoch to run")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--data-dir", default=os.environ.get("COLORGAN_DATA_DIR", str(ROOT / "data")))
    parser.add_argument("--out", default=str(ROOT / "bench"))
    parser.add_argument(
        "--peer-dir",
        type=Path,
        default=None,
        help="a checkout of junyanz/pytorch-CycleGAN-and-pix2pix: also time its colorization step against ours",
    )
    args = parser.parse_args(argv)
    keep_freed_memory()  # as train.py does

    device = pick_device(args.device)
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
        results["step"] = part_step(device, args.quick, repeats, models, variants, args.step_batch)
        if "limit" in parts:  # again after the long step part: the fractions use the better of the two
            results["limit_measurements"] = [results["limit"], part_limit(device, args.quick, repeats)]
            results["limit"] = best_of(*results["limit_measurements"])
        add_peak_fractions(results["step"], results.get("limit", {}))
    if "data" in parts:
        results["data"] = part_data(device, args.quick, data_dir, args.workers, results.get("step", []), repeats)
    if args.peer_dir is not None:
        if not (args.peer_dir / "models" / "colorization_model.py").is_file():
            parser.error(f"--peer-dir {args.peer_dir} is not a pytorch-CycleGAN-and-pix2pix checkout")
        results["peer"] = part_peer(args.peer_dir.expanduser(), args.quick, repeats if not args.quick else 1)
    if "epoch" in parts:
        results["epoch"] = part_epoch(device, args.quick, data_dir, args.epoch_fraction, results.get("step", []))
    if "infer" in parts:
        results["infer"] = part_infer(device, args.quick, repeats)
    write_report(results, Path(args.out))
    return results
