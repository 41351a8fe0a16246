"""Untrusted checkpoints: no loader in colorgan ever runs code hidden in a pickle."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from colorgan.checkpoint import AtomicCheckpointIO, CheckpointError, load_checkpoint, load_generator
from colorgan.evaluation import evaluate
from colorgan.models import build_generator
from colorgan.training import build, train
from tests.conftest import train_overrides

GENERATOR = {"name": "unet", "image_size": 32, "ngf": 8, "norm": "batch", "dropout": 0.5, "depth": None}


class Payload:
    """Unpickling this calls ``Path.touch(marker)``: any code could run in its place."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def generator_checkpoint() -> dict:
    weights = build_generator(GENERATOR).state_dict()
    return {
        "state_dict": {f"generator.{k}": v for k, v in weights.items()},
        "hyper_parameters": {"generator": GENERATOR},
    }


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "pwned"


@pytest.fixture
def evil(tmp_path: Path, marker: Path) -> Path:
    """A real, loadable generator checkpoint with the payload tucked inside."""
    path = tmp_path / "evil.ckpt"
    torch.save({**generator_checkpoint(), "extra": Payload(marker)}, path)
    torch.load(path, weights_only=False)  # the control: an ordinary unpickle does run it
    assert marker.exists()
    marker.unlink()
    return path


def refused():
    return pytest.raises(CheckpointError, match=r"refused to load .*could run code")


def test_load_checkpoint_and_load_generator_refuse_it(evil, marker):
    with refused():
        load_checkpoint(evil)
    with refused():
        load_generator(evil)
    assert not marker.exists()


def test_evaluate_refuses_it(make_cfg, evil, marker, tmp_path):
    with refused():
        evaluate(make_cfg([f"ckpt_path={evil}", "device=cpu"], config_name="eval", output_dir=tmp_path / "eval"))
    assert not marker.exists()


def test_init_from_refuses_it(make_cfg, evil, marker):
    with refused():
        train(make_cfg(train_overrides("cifar_gan", f"model.init_from={evil}", "trainer.fast_dev_run=true")))
    assert not marker.exists()


def test_resume_refuses_it_even_when_torch_is_told_to_trust_pickles(make_cfg, evil, marker, monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # Lightning's own load would now unpickle code
    with refused():  # checked before fit
        train(make_cfg(train_overrides("cifar_pretrain", f"ckpt_path={evil}", "trainer.max_epochs=1")))
    datamodule, model, trainer = build(make_cfg(train_overrides("cifar_pretrain", "trainer.max_epochs=1")))
    with refused():  # Lightning's resume path itself, through the trainer's CheckpointIO
        trainer.fit(model, datamodule=datamodule, ckpt_path=str(evil))
    assert not marker.exists()


@pytest.mark.parametrize("fmt", ["legacy torch.save", "bare pickle"])
def test_older_formats_are_refused_too(tmp_path, marker, fmt):
    path = tmp_path / "old.ckpt"
    obj = {**generator_checkpoint(), "extra": Payload(marker)}
    if fmt == "bare pickle":
        path.write_bytes(pickle.dumps(obj))
    else:
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    with pytest.raises(CheckpointError):
        AtomicCheckpointIO().load_checkpoint(path)
    assert not marker.exists()


def test_a_clean_checkpoint_still_loads(tmp_path):
    path = tmp_path / "clean.ckpt"
    torch.save(generator_checkpoint(), path)
    generator, hparams = load_generator(path)
    assert not generator.training and hparams["generator"]["name"] == "unet"
