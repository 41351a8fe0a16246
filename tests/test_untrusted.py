"""Untrusted checkpoints and weights: no loader in colorgan ever runs code hidden in a pickle."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from colorgan.checkpoint import AtomicCheckpointIO, CheckpointError, load_checkpoint, load_generator
from colorgan.evaluate.evaluator import evaluate
from colorgan.evaluate.probe import ProbeError, load_probe
from colorgan.models import build_generator
from colorgan.models.resnet_unet import PretrainedWeightsUnavailable, load_imagenet_resnet18_state
from colorgan.train.build import build, train
from colorgan.weights import WeightsUnavailable, load_state_dict_file
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


# ----------------------------------------------------------------------------- what the refusal says
class Custom:
    """A class of the user's own: ``torch.save`` pickles it by reference, which only a full unpickle resolves."""

    def __init__(self) -> None:
        self.value = 1


def write_not_a_checkpoint(path: Path, kind: str) -> Path:
    if kind == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(1024))
    elif kind == "text":
        path.write_text("model: unet\nepochs: 10\n")
    elif kind == "png":
        Image.new("RGB", (8, 8), (200, 30, 30)).save(path, format="PNG")
    elif kind == "zip without data.pkl":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("notes.txt", "hello")
    else:  # a plain pickle, as pickle.dump writes it (protocol 4 and up are not torch.save's)
        path.write_bytes(pickle.dumps({"state_dict": {}}, protocol=4))
    return path


@pytest.mark.parametrize("kind", ["random bytes", "text", "png", "zip without data.pkl", "plain pickle"])
def test_a_file_that_is_no_checkpoint_is_called_that(tmp_path, kind):
    path = write_not_a_checkpoint(tmp_path / "model.ckpt", kind)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert f"{path} is not a checkpoint" in message, message
    assert "could run code" not in message and "weights_only" not in message, message


def test_a_folder_is_called_a_folder_and_its_checkpoints_are_suggested(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    with pytest.raises(CheckpointError, match=r"is a folder.*holds no \.ckpt file"):
        load_checkpoint(run)
    torch.save(generator_checkpoint(), run / "checkpoints" / "last.ckpt")
    torch.save(generator_checkpoint(), run / "checkpoints" / "epoch=3.ckpt")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(run)
    message = str(info.value)
    assert f"{run} is a folder" in message and f"did you mean {run / 'checkpoints' / 'last.ckpt'}?" in message
    assert "epoch=3.ckpt" in message, message


def test_a_truly_unsafe_pickle_is_refused_without_torchs_advice_to_trust_it(tmp_path):
    path = tmp_path / "custom.ckpt"
    torch.save({**generator_checkpoint(), "extra": Custom()}, path)
    with refused() as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "Custom" in message and "weights_only" not in message and "add_safe_globals" not in message, message


# ------------------------------------------------------------------------ every other torch file, alike
OTHER_LOADERS = {
    "probe": (lambda path: load_probe(path), ProbeError),
    "metric weights": (lambda path: load_state_dict_file(path, "Inception"), WeightsUnavailable),
    "ImageNet ResNet-18": (lambda path: load_imagenet_resnet18_state(str(path)), PretrainedWeightsUnavailable),
}


@pytest.mark.parametrize("loader", sorted(OTHER_LOADERS))
def test_every_loader_refuses_code_and_names_what_a_file_is(tmp_path, evil, marker, loader):
    load, error = OTHER_LOADERS[loader]
    with pytest.raises(error, match=r"refused to load .*could run code"):
        load(evil)
    assert not marker.exists()
    png = write_not_a_checkpoint(tmp_path / "weights.pt", "png")
    with pytest.raises(error, match=r"it holds a PNG image, not the zip archive that torch\.save writes"):
        load(png)
