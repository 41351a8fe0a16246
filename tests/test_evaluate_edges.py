"""evaluate.py at the edges: checkpoints whose labels would collide, a test split with no colour, one image,
a photo folder with only test/, and an eval.samples_out that cannot be written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from colorgan.data.cifar10 import DataNotFoundError
from colorgan.evaluate import evaluator as evaluation
from colorgan.evaluate.evaluator import EvaluationModule, checkpoint_labels, evaluate
from colorgan.runs import folder as run_folder
from colorgan.runs.folder import OutputNotWritableError
from colorgan.runs.launch import run_task
from colorgan.train.build import train
from colorgan.train.config_checks import ConfigError
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


# ------------------------------------------------------------------------- clear messages, no tracebacks
def test_a_one_image_test_split_is_scored(checkpoint, data_dir, tmp_path):
    root = photo_folder(tmp_path / "photos", {"train": 3, "test": 1})
    report = evaluate_with(data_dir, tmp_path / "eval", f"ckpt_path={checkpoint}", *FOLDER, f"data.root={root}")
    assert report["num_images"] == 1 and np.isfinite(report["models"]["run/last"]["psnr"])


def test_a_photo_folder_with_only_test_is_evaluated(checkpoint, data_dir, tmp_path):
    root = photo_folder(tmp_path / "photos", {"test": 3})
    report = evaluate_with(data_dir, tmp_path / "eval", f"ckpt_path={checkpoint}", *FOLDER, f"data.root={root}")
    assert report["num_images"] == 3 and report["split"].startswith("test: the test/ folder (3 images)")


def test_a_photo_folder_with_only_test_is_refused_for_training_naming_the_fix(make_cfg, tmp_path):
    root = photo_folder(tmp_path / "photos", {"test": 3})
    cfg = make_cfg(train_overrides("photos_pretrain", f"data.root={root}", "trainer.max_epochs=1"))
    with pytest.raises(DataNotFoundError, match=f"data.root={root} holds only test/"):
        train(cfg)


def test_precision_64_true_is_refused_naming_the_key(make_cfg, checkpoint, data_dir, tmp_path):
    cfg = make_cfg(train_overrides("cifar_pretrain", "trainer.precision=64-true"))
    with pytest.raises(ConfigError, match=r"^trainer\.precision='64-true' is invalid"):
        train(cfg)
    with pytest.raises(ConfigError, match=r"^trainer\.precision='64-true' is invalid"):
        evaluate_with(data_dir, tmp_path / "eval", f"ckpt_path={checkpoint}", "trainer.precision=64-true")


def test_an_unwritable_samples_out_is_refused_before_scoring(checkpoint, data_dir, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    scored = []
    monkeypatch.setattr(EvaluationModule, "test_step", lambda *args: scored.append(1))
    with pytest.raises(OutputNotWritableError, match=f"eval.samples_out={blocker / 'grid.png'} cannot be written"):
        evaluate_with(
            data_dir, tmp_path / "eval", f"ckpt_path={checkpoint}", "device=cpu", f"eval.samples_out={blocker}/grid.png"
        )
    assert not scored and not (tmp_path / "eval" / "metrics.json").exists()


def test_metrics_are_kept_when_samples_out_fails_after_scoring(checkpoint, data_dir, tmp_path, monkeypatch):
    target = tmp_path / "docs" / "grid.png"
    real = evaluation.save_image_atomic

    def fail_for_target(image, path, **kwargs):
        if Path(path) == target:
            raise OSError(28, "No space left on device")
        return real(image, path, **kwargs)

    monkeypatch.setattr(evaluation, "save_image_atomic", fail_for_target)
    out = tmp_path / "eval"
    with pytest.raises(OutputNotWritableError, match=r"eval\.samples_out=.*No space left on device") as info:
        evaluate_with(data_dir, out, f"ckpt_path={checkpoint}", "device=cpu", f"eval.samples_out={target}")
    assert json.loads((out / "metrics.json").read_text())["num_images"] == 24
    assert str(out / "metrics.json") in str(info.value)


def test_a_failed_samples_out_after_scoring_keeps_the_new_run_folder(
    checkpoint, data_dir, tmp_path, monkeypatch, capsys
):
    """Through run_task, as evaluate.py runs: a failure after scoring must not undo the run folder."""
    out, target = tmp_path / "eval", tmp_path / "docs" / "grid.png"
    real = evaluation.save_image_atomic
    monkeypatch.setattr(
        evaluation,
        "save_image_atomic",
        lambda image, path, **kw: (
            (_ for _ in ()).throw(OSError(28, "No space left on device"))
            if Path(path) == target
            else real(image, path, **kw)
        ),
    )
    cfg = compose_cfg([f"ckpt_path={checkpoint}", "device=cpu", f"eval.samples_out={target}"], data_dir, out)
    attempt = run_folder.Attempt(out, out / ".hydra", created_from=out, entries_before=frozenset(), archived=None)
    monkeypatch.setattr(run_folder, "_attempt", attempt)  # as KeepAttempts leaves it for a new run folder
    with pytest.raises(SystemExit) as exit_info:
        run_task(evaluate, cfg)
    assert exit_info.value.code == 1
    assert "error: eval.samples_out=" in capsys.readouterr().err
    assert (out / "metrics.json").is_file() and (out / "report.md").is_file()
