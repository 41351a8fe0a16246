"""evaluate.py at the edges: checkpoints whose labels would collide, a test split with no colour, one image,
a photo folder with only test/, and an eval.samples_out that cannot be written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from colorgan.evaluation import checkpoint_labels, evaluate
from colorgan.training import train
from tests.conftest import smooth_images, train_overrides
from tests.test_evaluate import compose_cfg

FOLDER = ["data=folder", "data.image_size=32", "data.num_workers=0", "data.eval_batch_size=2", "device=cpu"]


@pytest.fixture(scope="module")
def checkpoint(data_dir, tmp_path_factory) -> Path:
    """One tiny trained generator (its run folder is named ``run``)."""
    out = tmp_path_factory.mktemp("train") / "run"
    summary = train(compose_cfg(train_overrides("cifar_pretrain", "trainer.max_epochs=1"), data_dir, out, "train"))
    return Path(summary["last_checkpoint"])


def evaluate_with(data_dir: Path, out: Path, *overrides: str) -> dict:
    return evaluate(compose_cfg([*overrides], data_dir, out))


def photo_folder(root: Path, splits: dict[str, int], gray: tuple[str, ...] = ()) -> Path:
    """``splits``: how many photos each sub-folder holds; those named in ``gray`` are grayscale."""
    for seed, (split, n) in enumerate(splits.items()):
        (root / split).mkdir(parents=True)
        for i, rgb in enumerate(smooth_images(n, 40, seed)):
            image = Image.fromarray(rgb)
            (image.convert("L") if split in gray else image).save(root / split / f"{split}_{i}.png")
    return root


def test_labels_of_two_runs_last_checkpoints_come_from_their_folders():
    paths = ["logs/a/run/checkpoints/last.ckpt", "logs/b/run/checkpoints/last.ckpt", "other/x.ckpt"]
    assert checkpoint_labels(paths) == ["a/run/last", "b/run/last", "other/x"]
    assert checkpoint_labels(["r1/last.ckpt", "r2/last.ckpt"]) == ["r1/last", "r2/last"]  # already distinct
    assert checkpoint_labels(["run/last.ckpt", "run/last.ckpt"]) == ["run/last", "run/last#2"]  # one file twice


def test_two_checkpoints_with_one_label_are_both_evaluated(checkpoint, data_dir, tmp_path):
    copies = []
    for sweep in ("sweep_a", "sweep_b"):
        copy = tmp_path / sweep / "run" / "checkpoints" / "last.ckpt"
        copy.parent.mkdir(parents=True)
        copies.append(shutil.copy(checkpoint, copy))
    out = tmp_path / "eval"
    report = evaluate_with(data_dir, out, f"ckpt_path=[{copies[0]},{copies[1]}]", "device=cpu")
    assert set(report["models"]) == {"gray", "sweep_a/run/last", "sweep_b/run/last"}
    assert set(json.loads((out / "metrics.json").read_text())["models"]) == set(report["models"])


def test_an_all_grayscale_test_split_is_reported_as_such(checkpoint, data_dir, tmp_path, capsys):
    root = photo_folder(tmp_path / "photos", {"train": 3, "test": 4}, gray=("test",))
    out = tmp_path / "eval"
    report = evaluate_with(data_dir, out, f"ckpt_path={checkpoint}", *FOLDER, f"data.root={root}")
    assert report["grayscale_images"] == report["num_images"] == 4
    assert "every test image is grayscale" in report["warnings"][0]
    assert "Every test image is grayscale" in (out / "report.md").read_text()
    assert "WARNING: every test image is grayscale" in capsys.readouterr().out


def test_a_colour_test_split_has_no_grayscale_warning(checkpoint, data_dir, tmp_path):
    report = evaluate_with(data_dir, tmp_path / "eval", f"ckpt_path={checkpoint}", "device=cpu")
    assert report["warnings"] == [] and report["grayscale_images"] < report["num_images"]
    assert np.isfinite(report["models"]["gray"]["psnr"])
