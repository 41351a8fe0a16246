"""Model folders: safetensors + config.json + model card, loaded without pickle, same pixels as the checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from colorgan.checkpoint import load_generator
from colorgan.colorize import main as colorize
from colorgan.export import main as export
from colorgan.model_folder import ModelFolderError, save_model_folder
from tests.test_colorize import save_checkpoint
from tests.test_inference import TINY_UNET

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return save_checkpoint(TINY_UNET, tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


def photo(path, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (45, 70, 3), dtype=np.uint8)).save(path)
    return path


def test_folder_round_trip_gives_the_checkpoints_pixels_without_unpickling(ckpt, tmp_path, monkeypatch):
    folder = tmp_path / "my-colorizer"
    assert export(["--ckpt", str(ckpt), "--format", "folder", "--out", str(folder)]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["generator"]["name"] == "unet" and config["image_size"] == 32
    assert "L* / 50 - 1" in config["input"]["value"] and "/ 110" in config["output"]["value"]

    src = photo(tmp_path / "in.png")
    assert colorize([str(src), "--ckpt", str(ckpt), "--out", str(tmp_path / "from_ckpt")]) == 0

    def no_pickle(*args, **kwargs):
        raise AssertionError("a model folder must load without torch.load")

    monkeypatch.setattr(torch, "load", no_pickle)
    assert colorize([str(src), "--ckpt", str(folder), "--out", str(tmp_path / "from_folder")]) == 0
    a = np.asarray(Image.open(tmp_path / "from_ckpt" / "in.png"))
    b = np.asarray(Image.open(tmp_path / "from_folder" / "in.png"))
    assert np.array_equal(a, b)


def test_model_card_shows_the_evaluation_table_and_samples(ckpt, tmp_path):
    metrics = {
        "split": "test: 24 images",
        "num_images": 24,
        "models": {"gray": {"psnr": 24.83, "delta_e": 10.46}, "tiny/last": {"psnr": 25.17, "delta_e": 9.55}},
    }
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    grid = photo(tmp_path / "grid.png", seed=1)
    out = tmp_path / "card"
    args = ["--ckpt", str(ckpt), "--format", "folder", "--out", str(out), "--metrics", str(tmp_path / "metrics.json")]
    assert export([*args, "--samples", str(grid)]) == 0
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: colorgan")
    assert "| gray | 24.83 | 10.46 |" in card and "| tiny/last | 25.17 | 9.55 |" in card
    assert "](samples.png)" in card and (out / "samples.png").read_bytes() == grid.read_bytes()


def test_an_existing_folder_that_is_not_a_model_is_never_replaced(ckpt, tmp_path, capsys):
    keep = tmp_path / "photos"
    keep.mkdir()
    (keep / "holiday.jpg").write_bytes(b"precious")
    assert export(["--ckpt", str(ckpt), "--format", "folder", "--out", str(keep)]) == 2
    assert "is not a colorgan model folder" in capsys.readouterr().err
    assert (keep / "holiday.jpg").read_bytes() == b"precious"
    generator, hparams = load_generator(ckpt)
    first = save_model_folder(generator, hparams, tmp_path / "model")
    save_model_folder(generator, hparams, first)  # an earlier export is replaced
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_damaged_folder_is_named(ckpt, tmp_path):
    generator, hparams = load_generator(ckpt)
    folder = save_model_folder(generator, hparams, tmp_path / "model")
    (folder / "model.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(ModelFolderError, match=r"model\.safetensors"):
        load_generator(folder)


def test_the_weight_average_is_exported_unless_raw_weights(tmp_path):
    from colorgan.module import ColorizationModule

    torch.manual_seed(0)
    module = ColorizationModule(generator=TINY_UNET, lambda_gan=0.0, ema_decay=0.9)
    with torch.no_grad():
        for p in module.generator_ema.module.parameters():
            p.add_(0.5)
    path = tmp_path / "ema.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    for flag, expected in (([], module.generator_ema.module), (["--raw-weights"], module.generator)):
        out = tmp_path / f"model{len(flag)}"
        assert export(["--ckpt", str(path), "--format", "folder", "--out", str(out), *flag]) == 0
        loaded, _ = load_generator(out)
        assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), expected.state_dict().values()))


def test_resuming_from_a_model_folder_says_to_start_from_it_instead(ckpt, tmp_path):
    from colorgan.checkpoint import CheckpointError, load_checkpoint

    generator, hparams = load_generator(ckpt)
    folder = save_model_folder(generator, hparams, tmp_path / "model")
    with pytest.raises(CheckpointError, match=r"model\.init_from="):
        load_checkpoint(folder)
