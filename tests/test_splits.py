"""Train / val / test splits of photo folders: test is never trained or selected on, and stays put."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from colorgan.data import CIFAR10DataModule, DataNotFoundError, FolderDataModule
from colorgan.data import folder as folder_module


def write_photos(folder: Path, n: int, start: int = 0) -> list[Path]:
    """``n`` tiny real PNGs named photo_<i>.png."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + n):
        pixels = np.full((8, 8, 3), (i * 37) % 256, dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"photo_{i:03d}.png")
        paths.append(folder / f"photo_{i:03d}.png")
    return paths


def relative(files: list[Path], root: Path) -> set[str]:
    return {f.relative_to(root).as_posix() for f in files}


def test_train_val_test_folders_are_used_as_they_are(tmp_path):
    train, val, test = (write_photos(tmp_path / name, n) for name, n in (("train", 6), ("val", 3), ("test", 4)))
    dm = FolderDataModule(str(tmp_path), image_size=8, num_workers=0)
    splits = dm.split_files()
    assert (splits["train"], splits["val"], splits["test"]) == (train, val, test)
    assert dm.split_description("test") == "test: the test/ folder (4 images)"
    dm.setup("test")
    assert dm.test_set.files == test


def test_train_and_val_only_carves_test_out_of_train_never_trained_or_selected_on(tmp_path):
    train_files = write_photos(tmp_path / "train", 40)
    val_files = write_photos(tmp_path / "val", 5, start=100)
    dm = FolderDataModule(str(tmp_path), image_size=8, num_workers=0)
    dm.setup("fit")
    dm.setup("test")
    train, val, test = set(dm.train_set.files), set(dm.val_set.files), set(dm.test_set.files)
    assert val == set(val_files)  # checkpoints are still selected on val/
    assert test and test <= set(train_files)
    assert train.isdisjoint(test) and val.isdisjoint(test)
    assert train | test == set(train_files)
    assert dm.split_description("test") == (
        f"test: {len(test)} images carved from train/ by hash(relative path, split_seed=0), test_fraction=0.1"
    )
    assert dm.split_description("val") == "val: the val/ folder (5 images)"


def test_flat_folder_gets_a_disjoint_three_way_split(tmp_path):
    files = write_photos(tmp_path, 20) + write_photos(tmp_path / "nested", 40, start=20)
    dm = FolderDataModule(str(tmp_path), val_fraction=0.2, test_fraction=0.2)
    splits = dm.split_files()
    train, val, test = (set(splits[k]) for k in ("train", "val", "test"))
    assert train and val and test
    assert train.isdisjoint(val) and train.isdisjoint(test) and val.isdisjoint(test)
    assert train | val | test == set(files)
    assert 6 <= len(test) <= 20 and 6 <= len(val) <= 20  # ~12 each of 60
    assert "carved from data.root=" in dm.split_description("test")
    assert "val_fraction=0.2" in dm.split_description("val")


def test_given_test_folder_is_kept_out_of_a_flat_pool(tmp_path):
    pool = write_photos(tmp_path, 12)
    test_files = write_photos(tmp_path / "test", 3, start=50)
    splits = FolderDataModule(str(tmp_path)).split_files()
    assert splits["test"] == test_files
    assert set(splits["train"]) | set(splits["val"]) == set(pool)


def test_split_is_stable_across_runs_listing_order_and_new_files(tmp_path, monkeypatch):
    write_photos(tmp_path / "train", 60)
    write_photos(tmp_path / "val", 3, start=500)

    def named(seed: int = 0) -> dict[str, set[str]]:
        splits = FolderDataModule(str(tmp_path), split_seed=seed).split_files()
        return {k: relative(v, tmp_path) for k, v in splits.items()}

    first = named()
    assert named() == first  # a second run
    with monkeypatch.context() as m:  # the file system lists in another order
        real = folder_module.find_photos
        m.setattr(folder_module, "find_photos", lambda folder: (list(reversed(real(folder)[0])), {}))
        assert named() == first
    assert named(seed=1)["test"] != first["test"]  # the seed matters

    write_photos(tmp_path / "train", 30, start=200)  # new photos move no old one between splits
    grown = named()
    for split in ("train", "test"):
        assert first[split] <= grown[split]


def test_tiny_folders_still_get_every_split_or_say_why_not(tmp_path):
    write_photos(tmp_path / "three", 3)
    splits = FolderDataModule(str(tmp_path / "three")).split_files()
    assert [len(splits[k]) for k in ("train", "val", "test")] == [1, 1, 1]
    write_photos(tmp_path / "two", 2)
    with pytest.raises(DataNotFoundError, match="cannot be split into train and test and val"):
        FolderDataModule(str(tmp_path / "two")).split_files()


def test_fractions_are_checked():
    with pytest.raises(ValueError, match="test_fraction must be in"):
        FolderDataModule("unused", test_fraction=0.0)
    with pytest.raises(ValueError, match=r"val_fraction \+ data\.test_fraction must be < 1"):
        FolderDataModule("unused", val_fraction=0.5, test_fraction=0.5)


def test_cifar_describes_its_official_test_set(data_dir):
    dm = CIFAR10DataModule(data_dir=str(data_dir), val_size=16)
    assert dm.split_description("test") == "test: the official CIFAR-10 test set (24 images)"
    assert dm.split_description("val").startswith("val: 16 images held out of the CIFAR-10 train set")
    assert dm.split_description("train").startswith("train: 48 images")
