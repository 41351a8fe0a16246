"""Photo folders as a data module: train/val/test folders, or splits carved by a seeded hash of each path."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader, Dataset

from colorgan.data.cifar10 import DataNotFoundError
from colorgan.data.datamodule import ColorizationDataModule
from colorgan.data.datasets import FolderDataset, SkippedImages, check_readable
from colorgan.data.images import IMAGE_EXTENSIONS
from colorgan.data.outputs import find_photos, output_folder_kind

log = logging.getLogger(__name__)


class FolderDataModule(ColorizationDataModule):
    """Any folder tree of photos, split three ways so that the test images are never trained or selected on.

    Each split is its sub-folder when ``train/``, ``val/`` or ``test/`` exists; a missing one is carved
    out of the training pool (``train/``, or the whole tree when there is no ``train/``) by a seeded hash
    of each file's path relative to that pool (see ``hash_split``): the same files every run for the same
    ``split_seed``, whatever the listing order, and adding files never moves the others between splits.
    With ``train/`` and ``val/`` only, the test split is carved out of ``train/``, so ``val/`` stays the
    split checkpoints are selected on. ``split_description(split)`` says in words which rule made a split.
    """

    def __init__(
        self,
        root: str,
        image_size: int = 256,
        load_size: int | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
        on_bad_image: str = "skip",
        **loader_kwargs: Any,
    ) -> None:
        super().__init__(image_size=image_size, **loader_kwargs)
        for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0 < value < 1:
                raise ValueError(f"data.{name} must be in (0, 1), got {value}")
        if val_fraction + test_fraction >= 1:
            raise ValueError(
                f"data.val_fraction + data.test_fraction must be < 1 to leave images to train on, "
                f"got {val_fraction} + {test_fraction}"
            )
        self.root = Path(root).expanduser()
        self.load_size = load_size or round(image_size * 286 / 256)
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        self.on_bad_image = on_bad_image
        self.skipped_images = SkippedImages()
        self._splits: dict[str, list[Path]] | None = None
        self._descriptions: dict[str, str] = {}
        self._where: dict[str, str] = {}
        self._last_eval_set: Dataset | None = None
        self._left_out: dict[str, str] = {}  # colorgan outputs found under root: never read as photos

    def _files(self, folder: Path) -> list[Path]:
        """The photos under ``folder``; colorgan's own outputs in it (run folders, ...) are left out and noted."""
        files, left_out = find_photos(folder)
        self._left_out.update(left_out)
        if not files:
            raise DataNotFoundError(
                f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {folder}; "
                "set data.root=PATH to a folder of photos"
            )
        return files

    def split_files(self) -> dict[str, list[Path]]:
        """The files of each split, ``{"train": [...], "val": [...], "test": [...]}``, computed once."""
        if self._splits is not None:
            return self._splits
        if not self.root.is_dir():
            raise DataNotFoundError(f"data.root={self.root} is not a folder; set data.root=PATH to a folder of photos")
        kind = output_folder_kind(self.root)
        if kind is not None:
            raise DataNotFoundError(
                f"data.root={self.root} is {kind}, not a folder of photos; set data.root=PATH to the photos"
            )
        given = {name: self.root / name for name in ("val", "test") if (self.root / name).is_dir()}
        if (self.root / "train").is_dir():
            pool_dir, pool_name = self.root / "train", "train/"
            pool = self._files(pool_dir)
        else:
            pool_dir, pool_name = self.root, f"data.root={self.root}"
            pool = [f for f in self._files(self.root) if not any(f.is_relative_to(d) for d in given.values())]
            if given:
                pool_name += f" (outside its {', '.join(f'{n}/' for n in given)})"
        fractions = (("test", self.test_fraction), ("val", self.val_fraction))
        carved = {name: fraction for name, fraction in fractions if name not in given}
        if not pool and "test" in given:  # test/ (and val/) alone: enough to evaluate, nothing to train on
            carved, splits = {}, {}
        elif len(pool) < len(carved) + 1:
            raise DataNotFoundError(
                f"{len(pool)} image(s) under {pool_dir} cannot be split into "
                f"{' and '.join(['train', *carved])}; add images"
                + "".join(f", or a {n}/ sub-folder to data.root={self.root}" for n in carved)
            )
        else:
            splits = hash_split(pool, pool_dir, self.split_seed, carved)
        descriptions, where = {}, {}
        for name, folder in given.items():
            splits[name] = self._files(folder)
            descriptions[name] = f"{name}: the {name}/ folder ({len(splits[name])} images)"
            where[name] = f"in {folder}"
        rule = f"by hash(relative path, split_seed={self.split_seed})"
        for name, fraction in carved.items():
            descriptions[name] = (
                f"{name}: {len(splits[name])} images carved from {pool_name} {rule}, {name}_fraction={fraction}"
            )
            where[name] = f"of the {name} split of data.root={self.root}"
        held_out = " and ".join(carved)
        if "train" in splits:
            descriptions["train"] = f"train: {len(splits['train'])} images" + (
                f" of {pool_name} (the rest after the {held_out} split{'s' if len(carved) > 1 else ''})"
                if carved
                else " of the train/ folder"
            )
            where["train"] = (
                f"in {pool_dir}" if pool_dir != self.root else f"of the train split of data.root={self.root}"
            )
        self._splits, self._descriptions, self._where = splits, descriptions, where
        for path, kind in self._left_out.items():
            log.warning("not read as photos: %s is %s", path, kind)
        return splits

    def split_description(self, split: str = "test") -> str:
        """Which files ``split`` holds and by what rule, in words, e.g. for evaluation reports."""
        self.split_files()
        return self._descriptions[split]

    def setup(self, stage: str | None = None) -> None:
        splits = self.split_files()
        common = {"image_size": self.image_size, "on_bad_image": self.on_bad_image}
        if stage in (None, "fit", "validate") and self.train_set is None:
            if "train" not in splits or "val" not in splits:
                raise DataNotFoundError(
                    f"data.root={self.root} holds only {' and '.join(f'{n}/' for n in splits)}: no photos to train "
                    "on; add them in a train/ sub-folder (evaluate.py scores the test/ folder as it is)"
                )
            for name in ("train", "val"):
                check_readable(splits[name], self._where[name], self.on_bad_image)
            self.train_set = FolderDataset(splits["train"], load_size=self.load_size, train=True, **common)
            self.val_set = FolderDataset(splits["val"], **common)
        if stage in (None, "test") and self.test_set is None:
            check_readable(splits["test"], self._where["test"], self.on_bad_image)
            self.test_set = FolderDataset(splits["test"], **common)

    def val_dataloader(self) -> DataLoader:
        self._last_eval_set = self.val_set
        return super().val_dataloader()

    def test_dataloader(self) -> DataLoader:
        self._last_eval_set = self.test_set
        return super().test_dataloader()

    def _batch_source(self) -> Dataset | None:
        """The dataset the batch now arriving came from (its ``bad_index`` indexes that dataset's files)."""
        trainer = self.trainer
        if trainer is not None and trainer.training:
            return self.train_set
        if trainer is not None and trainer.testing:
            return self.test_set
        if trainer is not None and (trainer.validating or trainer.sanity_checking):
            return self.val_set
        return self._last_eval_set or self.val_set  # no trainer (evaluate.py): the last loader handed out

    def on_before_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        """Tally skipped files here, in the main process, where every worker's batches arrive."""
        self.skipped_images.update(self._batch_source(), batch.get("bad_index"))
        return batch

    def teardown(self, stage: str) -> None:
        count = self.skipped_images.summary()["count"]
        if count:
            log.warning("%d unreadable image files were skipped (each logged above)", count)

    def summary_fields(self) -> dict[str, Any]:
        """Added to the run summary (summary.json, metrics.json)."""
        return {"skipped_images": self.skipped_images.summary()}


def hash_split(files: list[Path], base: Path, seed: int, fractions: dict[str, float]) -> dict[str, list[Path]]:
    """Split ``files`` into ``"train"`` and the held-out splits named in ``fractions``, file by file.

    Each file gets u = hash(seed, path relative to ``base``) in [0, 1); the held-out splits take
    consecutive bands of u in the order given (``{"test": 0.1, "val": 0.1}``: u < 0.1 is test,
    0.1 <= u < 0.2 is val) and train takes the rest. A file's split depends only on its own path
    and the seed: not on the listing order, and adding or removing files moves no other file. A
    held-out split whose band caught no file (a tiny folder) takes the lowest-u file left in train.
    """
    keyed = sorted((_unit_hash(f.relative_to(base).as_posix(), seed), f) for f in files)
    splits: dict[str, list[Path]] = {name: [] for name in fractions}
    train: list[tuple[float, Path]] = []
    for u, f in keyed:
        low = 0.0
        for name, fraction in fractions.items():
            if low <= u < low + fraction:
                splits[name].append(f)
                break
            low += fraction
        else:
            train.append((u, f))
    for name in fractions:
        if not splits[name] and len(train) > 1:
            splits[name].append(train.pop(0)[1])
    if not train:  # every file fell in a held-out band: give train the last file of the largest split
        largest = max(splits.values(), key=len)
        if len(largest) > 1:
            f = largest.pop()
            train.append((0.0, f))
    return {"train": sorted(f for _, f in train), **{name: sorted(fs) for name, fs in splits.items()}}


def _unit_hash(text: str, seed: int) -> float:
    """A number in [0, 1) fixed by ``text`` and ``seed`` (the same on every machine and Python run)."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8, key=str(seed).encode()).digest()
    return int.from_bytes(digest, "big") / 2**64
