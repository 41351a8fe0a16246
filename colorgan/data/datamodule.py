"""LightningDataModules: uint8 RGB batches in, normalised Lab out, converted on the device."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from colorgan.color import rgb_to_lab_normalized
from colorgan.data.cifar10 import CLASS_NAMES, DataNotFoundError, cifar10_split_size, ensure_cifar10, load_cifar10_split
from colorgan.data.datasets import FolderDataset, SkippedImages, TensorImageDataset, check_readable
from colorgan.data.images import IMAGE_EXTENSIONS
from colorgan.data.outputs import find_photos, output_folder_kind

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
        translate: int = 0,
    ) -> None:
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.flip, self.drop_last = batch_size, shuffle, flip, drop_last
        self.translate = translate
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
            if self.translate:
                images = random_translate(images, self.translate)
            yield {"rgb": images, "label": self.labels.index_select(0, idx)}


def random_translate(images: torch.Tensor, pixels: int) -> torch.Tensor:
    """Shift each image by up to ``pixels`` in x and y, filling from a reflection: the random crop of a
    reflect-padded image, as CIFAR classifiers train, batched on the images' device.

    The small U-Net memorises CIFAR-10's 45,000 images within a few epochs; shifted copies are new
    inputs with the same colours, so it has to learn colour from content rather than position.
    """
    b, _, h, w = images.shape
    padded = torch.nn.functional.pad(images.float(), (pixels, pixels, pixels, pixels), mode="reflect")
    dy, dx = (torch.randint(0, 2 * pixels + 1, (b,), device=images.device) for _ in range(2))
    rows = (dy[:, None] + torch.arange(h, device=images.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, None, :]
    batch = torch.arange(b, device=images.device)[:, None, None, None]
    channel = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
    return padded[batch, channel, rows, cols].to(images.dtype)


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
