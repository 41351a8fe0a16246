"""CIFAR-10 as a data module: the whole set on the device, batched there (DeviceBatches)."""

from __future__ import annotations

import logging
from typing import Any

import torch

from colorgan.data.cifar10 import CLASS_NAMES, cifar10_split_size, ensure_cifar10, load_cifar10_split
from colorgan.data.datamodule import ColorizationDataModule
from colorgan.data.datasets import TensorImageDataset
from colorgan.data.device_batches import DeviceBatches

log = logging.getLogger(__name__)


class CIFAR10DataModule(ColorizationDataModule):
    """CIFAR-10 at 32 x 32: train minus a fixed seeded validation slice, and the official test set."""

    class_names = CLASS_NAMES

    def __init__(
        self,
        data_dir: str = "data",
        val_size: int = 5000,
        split_seed: int = 0,
        flip: bool = True,
        download: bool = True,
        on_device: bool = True,
        translate: int = 0,
        **loader_kwargs: Any,
    ) -> None:
        super().__init__(**{"image_size": 32, **loader_kwargs})
        if not 0 <= translate < 16:
            raise ValueError(f"data.translate must be in [0, 15] pixels, got {translate}")
        if translate and not on_device:
            raise ValueError("data.translate needs data.on_device=true (the shifts are made on the device)")
        self.data_dir = data_dir
        self.val_size = val_size
        self.split_seed = split_seed
        self.flip = flip
        self.translate = translate
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
            shuffle=train and not (trainer is not None and trainer.overfit_batches),  # overfit: same batches each epoch
            flip=train and self.flip,
            drop_last=train and len(dataset) > self.batch_size,
            rank=trainer.global_rank if (trainer is not None and train) else 0,
            world_size=trainer.world_size if (trainer is not None and train) else 1,
            seed=self.split_seed,
            translate=self.translate if train else 0,
        )

    def train_dataloader(self) -> Any:
        return self._device_batches(self.train_set, True) if self.on_device else super().train_dataloader()

    def val_dataloader(self) -> Any:
        return self._device_batches(self.val_set, False) if self.on_device else super().val_dataloader()

    def test_dataloader(self) -> Any:
        return self._device_batches(self.test_set, False) if self.on_device else super().test_dataloader()

    def prepare_data(self) -> None:
        ensure_cifar10(self.data_dir, self.download)

    def split_description(self, split: str = "test") -> str:
        if split == "test":
            n = len(self.test_set) if self.test_set is not None else cifar10_split_size(self.data_dir, "test")
            return "test: the official CIFAR-10 test set" + (f" ({n:,} images)" if n is not None else "")
        rule = f"held out of the CIFAR-10 train set by a seeded permutation (split_seed={self.split_seed})"
        if split == "val":
            return f"val: {self.val_size:,} images {rule}"
        n = cifar10_split_size(self.data_dir, "train")
        count = f"{n - self.val_size:,} images, " if n is not None else ""
        return f"train: {count}the CIFAR-10 train set minus the {self.val_size:,} val images"

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
