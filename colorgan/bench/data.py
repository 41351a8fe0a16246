"""Part ``data``: images/s that the CIFAR-10 and photo loaders (folder against shards) hand to the step."""

from __future__ import annotations

import contextlib
import io
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from colorgan.bench.common import load_size, smooth_uint8_images, synchronize
from colorgan.color import rgb_to_lab_normalized
from colorgan.data.datasets import TensorImageDataset
from colorgan.data.device_batches import DeviceBatches
from colorgan.data.images import find_images


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
def torch_threads(n: int) -> Iterator[None]:
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
                prepare(folder, shards, size=load_size(size), workers=workers)
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
