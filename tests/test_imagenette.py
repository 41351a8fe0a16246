"""data=imagenette: a local folder is read as it is, torchvision downloads it otherwise, offline names the fix."""

from __future__ import annotations

import urllib.error
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torchvision
from hydra.utils import instantiate
from PIL import Image

from colorgan.data import DataNotFoundError, ImagenetteDataModule

WNIDS = ("n01440764", "n03888257")
REAL_ARCHIVES = torchvision.datasets.Imagenette._ARCHIVES  # the URLs whose stems name the extracted folders


def write_imagenette(folder: Path, train_per_class: int = 10, val_per_class: int = 2) -> dict[str, list[Path]]:
    """Tiny JPEGs laid out as Imagenette is: ``<split>/<wnid>/<wnid>_<i>.JPEG``."""
    files: dict[str, list[Path]] = {"train": [], "val": []}
    for split, n in (("train", train_per_class), ("val", val_per_class)):
        for c, wnid in enumerate(WNIDS):
            (folder / split / wnid).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                path = folder / split / wnid / f"{wnid}_{i}.JPEG"
                Image.fromarray(np.full((12, 16, 3), (40 * c + 9 * i) % 256, dtype=np.uint8)).save(path, "JPEG")
                files[split].append(path)
    return {split: sorted(paths) for split, paths in files.items()}


class FakeImagenette:
    """Stands in for torchvision.datasets.Imagenette: 'extracts' into root/<archive stem>/ as torchvision does."""

    calls: ClassVar[list[tuple[str, str, str, bool]]] = []
    error: ClassVar[Exception | None] = None

    def __init__(self, root: str, split: str = "train", size: str = "full", download: bool = False) -> None:
        type(self).calls.append((root, split, size, download))
        if type(self).error is not None:
            raise type(self).error
        extracted = Path(root) / Path(REAL_ARCHIVES[size][0]).stem
        if not extracted.exists():
            write_imagenette(extracted)


@pytest.fixture
def fake_torchvision(monkeypatch: pytest.MonkeyPatch) -> type[FakeImagenette]:
    monkeypatch.setattr(FakeImagenette, "calls", [])
    monkeypatch.setattr(FakeImagenette, "error", None)
    monkeypatch.setattr(torchvision.datasets, "Imagenette", FakeImagenette)
    return FakeImagenette


def test_local_folder_is_read_without_any_download(tmp_path, fake_torchvision):
    files = write_imagenette(tmp_path / "imagenette")
    dm = ImagenetteDataModule(data_dir=str(tmp_path), image_size=8, num_workers=0)
    dm.prepare_data()
    dm.setup("fit")
    dm.setup("test")
    assert fake_torchvision.calls == []
    assert dm.root == tmp_path / "imagenette"
    assert dm.val_set.files == files["val"]  # the official val picks checkpoints
    train, test = set(dm.train_set.files), set(dm.test_set.files)
    assert test and train.isdisjoint(test) and train | test == set(files["train"])  # test carved out of train/
    assert dm.split_description("val") == f"val: the val/ folder (4 images), Imagenette in {tmp_path / 'imagenette'}"
    assert dm.split_description("test").startswith(f"test: {len(test)} images carved from train/ by hash(")


@pytest.mark.parametrize(
    ("size", "folder"), [("320px", "imagenette2-320"), ("160px", "imagenette2-160"), ("full", "imagenette2")]
)
def test_missing_folder_is_downloaded_by_torchvision_then_read(tmp_path, fake_torchvision, size, folder):
    dm = ImagenetteDataModule(data_dir=str(tmp_path), size=size, image_size=8, num_workers=0)
    assert fake_torchvision.calls == []  # building the module reads and fetches nothing
    dm.prepare_data()
    root = str(tmp_path / "imagenette")
    assert fake_torchvision.calls == [(root, "train", size, True), (root, "val", size, True)]
    dm.setup("fit")
    extracted = tmp_path / "imagenette" / folder  # where torchvision extracts the archive
    assert dm.root == extracted
    assert dm.val_set.files == sorted((extracted / "val").rglob("*.JPEG"))
    assert len(fake_torchvision.calls) == 2  # setup found the extracted folder: no second download


def test_offline_or_download_false_names_the_path_and_the_fix(tmp_path, fake_torchvision):
    folder = tmp_path / "imagenette"
    dm = ImagenetteDataModule(data_dir=str(tmp_path), download=False, image_size=8, num_workers=0)
    with pytest.raises(DataNotFoundError) as info:
        dm.split_description("test")
    message = str(info.value)
    assert f"Imagenette not found in {folder} and data.download=false" in message
    assert f"put a folder with train/<wnid>/ and val/<wnid>/ sub-folders of images at {folder}" in message
    assert "downloaded elsewhere" in message and fake_torchvision.calls == []

    fake_torchvision.error = urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    dm = ImagenetteDataModule(data_dir=str(tmp_path), download=True, image_size=8, num_workers=0)
    with pytest.raises(DataNotFoundError) as info:
        dm.prepare_data()
    message = str(info.value)
    assert f"Imagenette not found in {folder} and the download failed (URLError: " in message
    assert f"train/<wnid>/ and val/<wnid>/ sub-folders of images at {folder}" in message


def test_unknown_size_is_named():
    with pytest.raises(ValueError, match=r"data.size must be one of full, 320px, 160px, got '224px'"):
        ImagenetteDataModule(size="224px")


def test_photos_pretrain_with_data_imagenette_composes_and_reads_data_dir(make_cfg, tmp_path):
    data_dir = tmp_path / "data"
    files = write_imagenette(data_dir / "imagenette")
    cfg = make_cfg(
        ["experiment=photos_pretrain", "data=imagenette", "data.image_size=128", f"paths.data_dir={data_dir}"]
    )
    assert cfg.data._target_ == "colorgan.data.ImagenetteDataModule"
    assert (cfg.data.data_dir, cfg.data.image_size, cfg.data.size) == (str(data_dir), 128, "320px")
    assert "root" not in cfg.data  # Imagenette always lives at <data_dir>/imagenette
    dm = instantiate(cfg.data, num_workers=0)
    assert isinstance(dm, ImagenetteDataModule) and dm.image_size == 128
    assert dm.split_files()["val"] == files["val"]
    assert dm.root == data_dir / "imagenette"
