"""CIFAR-10 as uint8 arrays in two ``.npz`` files, fetched through torchvision once if missing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from colorgan.errors import ColorganError
from colorgan.files import replacing

SPLITS = ("train", "test")
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class DataNotFoundError(ColorganError, FileNotFoundError):
    """The data set is not on disk and could not be fetched; the message says how to fix it."""


def cifar10_dir(data_dir: str | Path) -> Path:
    return Path(data_dir).expanduser() / "cifar10"


def _download_with_torchvision(folder: Path) -> None:
    """Fetch CIFAR-10 with torchvision and keep only the two compact npz files we read."""
    import torchvision

    raw = folder / "torchvision"
    for split in SPLITS:
        ds = torchvision.datasets.CIFAR10(root=str(raw), train=split == "train", download=True)
        with replacing(folder / f"{split}.npz") as tmp:
            np.savez(tmp, images=np.asarray(ds.data, dtype=np.uint8), labels=np.asarray(ds.targets, dtype=np.int64))


def download_or_explain(name: str, folder: Path, download: bool, fixes: str, fetch: Callable[[], None]) -> None:
    """Run ``fetch`` to put data set ``name`` in ``folder``; not allowed or failed, say ``fixes``."""
    if not download:
        raise DataNotFoundError(f"{name} not found in {folder} and data.download=false. {fixes}")
    folder.mkdir(parents=True, exist_ok=True)
    try:
        fetch()
    except Exception as err:  # network, SSL and archive errors all leave the user with the same fix
        raise DataNotFoundError(
            f"{name} not found in {folder} and the download failed ({type(err).__name__}: {err}). {fixes}"
        ) from err


def ensure_cifar10(data_dir: str | Path, download: bool = True) -> Path:
    """Return the folder holding ``train.npz`` and ``test.npz``, downloading them if allowed."""
    folder = cifar10_dir(data_dir)
    if not all((folder / f"{s}.npz").is_file() for s in SPLITS):
        fixes = (
            f"Fix: put train.npz and test.npz (arrays 'images' uint8 N x 32 x 32 x 3, 'labels' int64) in "
            f"{folder}, or point paths.data_dir (or COLORGAN_DATA_DIR) at a folder whose cifar10/ holds them, "
            "or run once with internet access so torchvision can download CIFAR-10"
        )
        download_or_explain("CIFAR-10", folder, download, fixes, lambda: _download_with_torchvision(folder))
    return folder


def load_cifar10_split(data_dir: str | Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 N x 3 x 32 x 32, labels int64 N) for ``split`` in {'train', 'test'}."""
    path = cifar10_dir(data_dir) / f"{split}.npz"
    try:
        with np.load(path, allow_pickle=False) as npz:
            images, labels = npz["images"], npz["labels"]
    except (OSError, KeyError, ValueError) as err:
        raise DataNotFoundError(
            f"{path} is not a readable CIFAR-10 file ({type(err).__name__}: {err}); it needs arrays "
            "'images' (uint8 N x 32 x 32 x 3) and 'labels' (int64 N). Delete it to download afresh."
        ) from err
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise DataNotFoundError(f"{path}: 'images' must be uint8 N x H x W x 3, got {images.dtype} {images.shape}")
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels.astype(np.int64))


def cifar10_split_size(data_dir: str | Path, split: str) -> int | None:
    """How many images ``split`` holds (reads only the labels), or None when the file cannot be read."""
    try:
        with np.load(cifar10_dir(data_dir) / f"{split}.npz", allow_pickle=False) as npz:
            return len(npz["labels"])
    except (OSError, KeyError, ValueError):
        return None
