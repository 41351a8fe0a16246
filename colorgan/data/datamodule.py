"""The base of every data module: uint8 RGB batches in, normalised Lab out, converted on the device."""

from __future__ import annotations

import logging
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from colorgan.color import rgb_to_lab_normalized

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

    def split_description(self, split: str = "test") -> str:
        """Which images ``split`` ('train', 'val' or 'test') holds, in words, e.g. for evaluation reports."""
        dataset = {"train": self.train_set, "val": self.val_set, "test": self.test_set}[split]
        return f"{split}: {len(dataset):,} images" if dataset is not None else split

    def score_validation_split(self) -> None:
        """Hand the validation split out as the test loader: evaluate.py ``eval.split=val`` chooses settings
        (a temperature, a checkpoint) there, so the test split is scored once, for the report."""
        self.setup("fit")
        self.test_set = self.val_set

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        L, ab = rgb_to_lab_normalized(batch["rgb"], compiled=self.compile_lab)
        return {**batch, "L": L, "ab": ab}
