"""LightningDataModules: uint8 RGB batches in, normalised Lab out, converted on the device."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from colorgan.color import rgb_to_lab_normalized
from colorgan.data.cifar10 import DataNotFoundError, ensure_cifar10, load_cifar10_split
from colorgan.data.datasets import FolderDataset, SkippedImages, TensorImageDataset, check_readable
from colorgan.data.images import IMAGE_EXTENSIONS, find_images

log = logging.getLogger(__name__)


class ColorizationDataModule(LightningDataModule):
    """Loaders of uint8 RGB, then Lab on the device right after the batch is moved there.

    Converting after the transfer keeps CPU workers to decoding and cropping, moves a quarter
    of the bytes that float Lab would, and runs the colour maths batched where it is fast.
    """

    def __init__(
        self,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = True,
        image_size: int = 32,
        compile_lab: bool = False,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.image_size = image_size
        self.compile_lab = compile_lab
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    def _loader(self, dataset: Dataset | None, train: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError("call setup() before asking for a dataloader")
        return DataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            drop_last=train and len(dataset) > self.batch_size,  # a last batch of 1 breaks BatchNorm
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        L, ab = rgb_to_lab_normalized(batch["rgb"], compiled=self.compile_lab)
        return {**batch, "L": L, "ab": ab}


class DeviceBatches:
    """Batches sliced from a uint8 tensor that already lives on the training device.

    For data sets that fit in device memory (CIFAR-10 is 150 MB as uint8) this replaces the
    DataLoader: one ``randperm`` per epoch, batched gather and flips on the device, no per-image
    Python, no workers, no host-to-device copies. Under DDP each rank takes every
    ``world_size``-th batch of one shared permutation, so ranks see disjoint data.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        shuffle: bool,
        flip: bool = False,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
    ) -> None:
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.flip, self.drop_last = batch_size, shuffle, flip, drop_last
        self.rank, self.world_size, self.seed, self.epoch = rank, world_size, seed, 0

    def _num_batches(self) -> int:
        n = len(self.images)
        total = n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        return total // self.world_size if self.world_size > 1 else total

    def __len__(self) -> int:
        return self._num_batches()

    def __iter__(self):
        device = self.images.device
        if self.shuffle and self.world_size > 1:  # ranks must share one permutation: seed it
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(len(self.images), generator=generator).to(device)
        elif self.shuffle:  # the global RNG, so ``seed=S`` makes the order reproducible
            order = torch.randperm(len(self.images)).to(device)
        else:
            order = torch.arange(len(self.images), device=device)
        self.epoch += 1
        for b in range(self._num_batches()):
            start = (b * self.world_size + self.rank) * self.batch_size
            idx = order[start : start + self.batch_size]
            images = self.images.index_select(0, idx)
            if self.flip:
                flip = torch.rand(len(idx), device=device) < 0.5
                images = torch.where(flip[:, None, None, None], images.flip(-1), images)
            yield {"rgb": images, "label": self.labels.index_select(0, idx)}


class CIFAR10DataModule(ColorizationDataModule):
    """CIFAR-10 at 32 x 32: train minus a fixed seeded validation slice, and the official test set."""

    class_names = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

    def __init__(
        self,
        data_dir: str = "data",
        val_size: int = 5000,
        split_seed: int = 0,
        flip: bool = True,
        download: bool = True,
        on_device: bool = True,
        **loader_kwargs: Any,
    ) -> None:
        super().__init__(**{"image_size": 32, **loader_kwargs})
        self.data_dir = data_dir
        self.val_size = val_size
        self.split_seed = split_seed
        self.flip = flip
        self.download = download
        self.on_device = on_device

    def _device_batches(self, dataset: TensorImageDataset | None, train: bool) -> DeviceBatches:
        if dataset is None:
            raise RuntimeError("call setup() before asking for a dataloader")
        trainer = self.trainer
        device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
        if dataset.images.device != device:  # moved once, then reused every epoch
            dataset.images, dataset.labels = dataset.images.to(device), dataset.labels.to(device)
        return DeviceBatches(
            dataset.images,
            dataset.labels,
            self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            flip=train and self.flip,
            drop_last=train and len(dataset) > self.batch_size,
            rank=trainer.global_rank if (trainer is not None and train) else 0,
            world_size=trainer.world_size if (trainer is not None and train) else 1,
            seed=self.split_seed,
        )

    def train_dataloader(self) -> Any:
        return self._device_batches(self.train_set, True) if self.on_device else super().train_dataloader()

    def val_dataloader(self) -> Any:
        return self._device_batches(self.val_set, False) if self.on_device else super().val_dataloader()

    def test_dataloader(self) -> Any:
        return self._device_batches(self.test_set, False) if self.on_device else super().test_dataloader()

    def prepare_data(self) -> None:
        ensure_cifar10(self.data_dir, self.download)

    def setup(self, stage: str | None = None) -> None:
        ensure_cifar10(self.data_dir, self.download)
        if stage in (None, "fit", "validate") and self.train_set is None:
            images, labels = load_cifar10_split(self.data_dir, "train")
            if not 0 < self.val_size < len(images):
                raise ValueError(f"data.val_size must be in [1, {len(images) - 1}], got {self.val_size}")
            order = torch.randperm(len(images), generator=torch.Generator().manual_seed(self.split_seed))
            val_idx, train_idx = order[: self.val_size].sort().values, order[self.val_size :]
            self.train_set = TensorImageDataset(images[train_idx], labels[train_idx], flip=self.flip)
            self.val_set = TensorImageDataset(images[val_idx], labels[val_idx])
        if stage in (None, "test") and self.test_set is None:
            self.test_set = TensorImageDataset(*load_cifar10_split(self.data_dir, "test"))


class FolderDataModule(ColorizationDataModule):
    """Any folder tree of photos; ``train/`` and ``val/`` sub-folders if present, else a seeded split."""

    def __init__(
        self,
        root: str,
        image_size: int = 256,
        load_size: int | None = None,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        on_bad_image: str = "skip",
        **loader_kwargs: Any,
    ) -> None:
        super().__init__(image_size=image_size, **loader_kwargs)
        self.root = Path(root).expanduser()
        self.load_size = load_size or round(image_size * 286 / 256)
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.on_bad_image = on_bad_image
        self.skipped_images = SkippedImages()

    def _files(self, folder: Path) -> list[Path]:
        files = find_images(folder)
        if not files:
            raise DataNotFoundError(
                f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {folder}; "
                "set data.root=PATH to a folder of photos"
            )
        return files

    def split_files(self) -> tuple[list[Path], list[Path]]:
        if not self.root.is_dir():
            raise DataNotFoundError(f"data.root={self.root} is not a folder; set data.root=PATH to a folder of photos")
        if (self.root / "train").is_dir() and (self.root / "val").is_dir():
            return self._files(self.root / "train"), self._files(self.root / "val")
        files = self._files(self.root)
        order = torch.randperm(len(files), generator=torch.Generator().manual_seed(self.split_seed)).tolist()
        n_val = max(1, round(len(files) * self.val_fraction)) if len(files) > 1 else 0
        return [files[i] for i in order[n_val:]], [files[i] for i in order[:n_val]] or files[:1]

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train_files, val_files = self.split_files()
        split = (self.root / "train").is_dir() and (self.root / "val").is_dir()
        for name, files in (("train", train_files), ("val", val_files)):
            where = f"in {self.root / name}" if split else f"of the {name} split of data.root={self.root}"
            check_readable(files, where, self.on_bad_image)
        common = {"image_size": self.image_size, "on_bad_image": self.on_bad_image}
        self.train_set = FolderDataset(train_files, load_size=self.load_size, train=True, **common)
        self.val_set = FolderDataset(val_files, **common)
        self.test_set = self.val_set

    def on_before_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        """Tally skipped files here, in the main process, where every worker's batches arrive."""
        training = self.trainer is not None and self.trainer.training
        self.skipped_images.update(self.train_set if training else self.val_set, batch.get("bad_index"))
        return batch

    def teardown(self, stage: str) -> None:
        count = self.skipped_images.summary()["count"]
        if count:
            log.warning("%d unreadable image files were skipped (each logged above)", count)

    def summary_fields(self) -> dict[str, Any]:
        """Added to the run summary (summary.json, metrics.json)."""
        return {"skipped_images": self.skipped_images.summary()}


def default_num_workers(limit: int = 8) -> int:
    """Decoding workers for photo folders: one per core, leaving one for the main process."""
    return max(0, min(limit, (os.cpu_count() or 1) - 1))
