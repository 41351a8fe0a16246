"""colorgan's own outputs inside a photo folder (``data.root`` holding ``logs/``, a model folder, colorize
outputs) are never read as photos: not by data=folder, not by the shards preparation."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from colorgan.apps.colorize import OUTPUT_MARK
from colorgan.data.cifar10 import DataNotFoundError
from colorgan.data.folder import FolderDataModule
from colorgan.data.outputs import COLORIZE_MARK, MODEL_FORMAT
from colorgan.data.prepare import prepare
from colorgan.model_folder import FORMAT
from colorgan.runs.folder import LOCK_FILE
from tests.conftest import smooth_images


def picture(path: Path, seed: int, mark: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    info = None
    if mark:
        info = PngImagePlugin.PngInfo()
        info.add_text(mark, "photo.jpg")
    Image.fromarray(smooth_images(1, 48, seed)[0]).save(path, pnginfo=info)


@pytest.fixture
def photos_with_outputs(tmp_path: Path) -> tuple[Path, set[Path]]:
    """train/ and val/ photos, with runs, a sweep, a model folder and colorize outputs among them."""
    root = tmp_path / "photos"
    photos = {root / "train" / f"p{i}.png" for i in range(8)} | {root / "val" / f"v{i}.png" for i in range(3)}
    photos.add(root / "train" / "hf_model" / "cover.png")  # someone else's config.json: a photo folder still
    (root / "train" / "hf_model").mkdir(parents=True)
    (root / "train" / "hf_model" / "config.json").write_text(json.dumps({"model_type": "vit"}))
    for i, path in enumerate(sorted(photos)):
        picture(path, i)
    run = root / "train" / "logs" / "train" / "runs" / "2024-01-01_00-00-00"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("task_name: train\n")
    picture(run / "samples" / "epoch_000.png", 90)
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    picture(root / "train" / "logs" / "train" / "multiruns" / "x" / "0" / "samples" / "epoch_000.png", 91)
    (root / "train" / "logs" / "train" / "multiruns" / "x" / "multirun.yaml").write_text("hydra: {}\n")
    picture(root / "train" / "old_run" / "samples" / "epoch_001.png", 92)  # a run without .hydra/
    (root / "train" / "old_run" / "summary.json").write_text("{}")
    picture(root / "train" / "locked_run" / "samples.png", 93)
    (root / "train" / "locked_run" / LOCK_FILE).write_text("")
    picture(root / "val" / "model" / "samples.png", 94)
    (root / "val" / "model" / "config.json").write_text(json.dumps({"format": FORMAT}))
    picture(root / "train" / "p0_colorized.png", 95, mark=OUTPUT_MARK)
    return root, photos


def test_the_marks_are_the_ones_colorgan_writes():
    assert COLORIZE_MARK == OUTPUT_MARK and MODEL_FORMAT == FORMAT and LOCK_FILE == ".colorgan.lock"


def test_folder_loader_skips_run_folders_model_folders_and_colorize_outputs(photos_with_outputs, caplog):
    root, photos = photos_with_outputs
    with caplog.at_level(logging.WARNING):
        splits = FolderDataModule(str(root)).split_files()
    assert set().union(*map(set, splits.values())) == photos
    logged = caplog.text
    assert f"{root / 'train' / 'logs' / 'train' / 'runs' / '2024-01-01_00-00-00'} is a run folder" in logged
    assert "model folder" in logged and "colorgan-colorize" in logged


def test_a_run_folder_given_as_data_root_is_refused_naming_it(photos_with_outputs):
    root, _ = photos_with_outputs
    run = root / "train" / "logs" / "train" / "runs" / "2024-01-01_00-00-00"
    with pytest.raises(DataNotFoundError, match=f"data.root={run} is a run folder of train.py or evaluate.py"):
        FolderDataModule(str(run)).split_files()


def test_prepare_skips_them_the_same_way(photos_with_outputs, tmp_path):
    root, photos = photos_with_outputs
    info = prepare(root, tmp_path / "shards", size=36, workers=1)
    assert sum(split["images"] for split in info["splits"].values()) == len(photos)
    assert all(not split["skipped"] for split in info["splits"].values())
