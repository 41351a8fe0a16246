"""Checkpoint files: safe loading, the generator inside, the trained size, which file a resume means,
and files written by an earlier colorgan that keep loading."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch

from colorgan.checkpoint import (
    CheckpointError,
    has_weight_average,
    load_checkpoint,
    load_generator,
    trained_size,
)
from colorgan.models import build_generator
from colorgan.runs.resume import check_resume_checkpoint, newest_last_checkpoint, resolve_resume_path

FIXTURES = Path(__file__).parent / "fixtures" / "v0.1.0"
TINY = {"name": "unet", "image_size": 32, "ngf": 4, "norm": "batch", "dropout": 0.0, "depth": None}


def save_generator_checkpoint(path: Path, gen_cfg: dict, ema: bool = False) -> torch.nn.Module:
    generator = build_generator(gen_cfg)
    state = {f"generator.{k}": v for k, v in generator.state_dict().items()}
    if ema:
        state |= {
            f"generator_ema.module.{k}": v + 1 if v.is_floating_point() else v
            for k, v in generator.state_dict().items()
        }
    torch.save({"state_dict": state, "hyper_parameters": {"generator": gen_cfg}}, path)
    return generator


# ------------------------------------------------------------------------------------- loading
def test_a_folder_given_as_a_checkpoint_names_the_checkpoint_inside(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"state_dict": {}}, run / "checkpoints" / "last.ckpt")
    with pytest.raises(CheckpointError, match=r"did you mean .*last\.ckpt"):
        load_checkpoint(run)


def test_a_bare_name_that_is_no_file_lists_the_shipped_models(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match="cifar10-colourfull is neither a file here nor a shipped model") as info:
        load_generator("cifar10-colourfull")
    assert "cifar10-colourful" in str(info.value).split("shipped model", 1)[1]


@pytest.mark.parametrize("content", [b"", b"not a zip file at all", b"PK\x03\x04 truncated"])
def test_a_damaged_file_is_refused_naming_it(tmp_path, content):
    path = tmp_path / "bad.ckpt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint(path)


def test_a_file_holding_something_else_than_a_dict_is_refused(tmp_path):
    torch.save([1, 2, 3], tmp_path / "list.ckpt")
    with pytest.raises(CheckpointError, match="holds a list, not a colorgan checkpoint"):
        load_checkpoint(tmp_path / "list.ckpt")


def test_the_weight_average_is_used_unless_asked_for_the_trained_weights(tmp_path):
    trained = save_generator_checkpoint(tmp_path / "g.ckpt", TINY, ema=True)
    assert has_weight_average(load_checkpoint(tmp_path / "g.ckpt"))
    averaged, _ = load_generator(tmp_path / "g.ckpt")
    raw, _ = load_generator(tmp_path / "g.ckpt", ema=False)
    key = next(k for k, v in trained.state_dict().items() if v.is_floating_point())
    assert torch.equal(raw.state_dict()[key], trained.state_dict()[key])
    assert torch.equal(averaged.state_dict()[key], trained.state_dict()[key] + 1)


@pytest.mark.parametrize(
    ("hparams", "size"),
    [
        ({"generator": {"image_size": 128}}, 128),
        ({"generator": {}}, None),
        ({}, None),
        ({"generator": {"image_size": True}}, None),
    ],
)
def test_the_trained_size_is_read_in_one_place(hparams, size):
    assert trained_size(hparams) == size


# ------------------------------------------------------------------------------------- resume
def touch_last(folder: Path, name: str = "last.ckpt", age_s: float = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"x")
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))
    return path


def test_last_is_the_newest_last_checkpoint_of_the_run(tmp_path):
    older = touch_last(tmp_path / "a", age_s=100)
    newer = touch_last(tmp_path / "b", "last-v1.ckpt")
    assert newest_last_checkpoint([tmp_path / "a", tmp_path / "b", tmp_path / "missing"]) == newer
    assert resolve_resume_path("last", [tmp_path / "a"], tmp_path) == str(older)


def test_last_without_a_checkpoint_is_an_error_naming_another_run_to_resume(tmp_path):
    runs = tmp_path / "runs"
    other = runs / "2026-01-01_00-00-00"
    touch_last(other / "checkpoints")
    this = runs / "2026-02-02_00-00-00"
    with pytest.raises(CheckpointError, match=f"hydra.run.dir={other}") as info:
        resolve_resume_path("last", [this / "checkpoints"], this, runs)
    assert "ckpt_path=last_or_new" in str(info.value)


def test_last_or_new_starts_afresh_and_a_path_or_none_is_passed_on(tmp_path):
    assert resolve_resume_path("last_or_new", [tmp_path / "checkpoints"], tmp_path) is None
    assert resolve_resume_path(None, [], tmp_path) is None
    assert resolve_resume_path("/some/file.ckpt", [], tmp_path) == "/some/file.ckpt"


def test_resuming_from_another_models_checkpoint_is_refused_before_lightning_restores_it(tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3))
    other = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3))
    full = {"state_dict": other.state_dict(), "optimizer_states": [], "loops": {}}
    torch.save(full, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match=r"written by a different model .*other shapes"):
        check_resume_checkpoint(tmp_path / "other.ckpt", model)
    torch.save({"state_dict": model.state_dict()}, tmp_path / "weights_only.ckpt")
    with pytest.raises(CheckpointError, match="not a full training checkpoint"):
        check_resume_checkpoint(tmp_path / "weights_only.ckpt", model)
    torch.save({**full, "state_dict": model.state_dict()}, tmp_path / "same.ckpt")
    check_resume_checkpoint(tmp_path / "same.ckpt", model)


# ------------------------------------------------------------------------ files of earlier versions
@pytest.mark.parametrize("name", ["tiny_unet.ckpt", "tiny_unet_folder"])
def test_a_checkpoint_and_a_model_folder_written_by_colorgan_0_1_0_still_load_and_colorize_alike(name):
    """Written by train.py and colorgan-export (fp16 folder) of 0.1.0, before the package moved into subpackages."""
    expected = json.loads((FIXTURES / "expected.json").read_text())["ab_every_8th_pixel"][name]
    generator, hparams = load_generator(FIXTURES / name)
    assert trained_size(hparams) == 32
    L = torch.linspace(-1, 1, 32 * 32).reshape(1, 1, 32, 32)
    with torch.no_grad():
        ab = generator(L).float()[0, :, ::8, ::8].flatten()
    torch.testing.assert_close(ab, torch.tensor(expected), rtol=1e-3, atol=1e-5)
