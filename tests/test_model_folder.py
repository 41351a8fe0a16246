"""Model folders: safetensors + config.json + model card, loaded without pickle, same pixels as the checkpoint."""

from __future__ import annotations

import json
import os
import stat
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from colorgan import checkpoint as checkpoint_module
from colorgan.apps.colorize import main as colorize
from colorgan.apps.export import main as export
from colorgan.checkpoint import CheckpointError, load_generator
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
    assert export(["--ckpt", str(ckpt), "--format", "folder", "--out", str(keep)]) == 1
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
    from colorgan.train.module import ColorizationModule

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


# ------------------------------------------------------------------ folders colorgan did not write
def export_folder(ckpt, out, *extra):
    return export(["--ckpt", str(ckpt), "--format", "folder", "--out", str(out), *map(str, extra)])


def test_a_folder_holding_someone_elses_config_json_is_never_replaced(ckpt, tmp_path, capsys):
    other = tmp_path / "bert-base"
    other.mkdir()
    (other / "config.json").write_text('{"model_type": "bert", "hidden_size": 768}')
    (other / "pytorch_model.bin").write_bytes(b"someone else's weights")
    before = {p.name: p.read_bytes() for p in other.iterdir()}
    assert export_folder(ckpt, other) == 1
    err = capsys.readouterr().err
    assert str(other / "config.json") in err and "colorgan did not write" in err, err
    assert {p.name: p.read_bytes() for p in other.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bert-base"]


def test_a_clone_of_a_model_folder_is_updated_in_place_keeping_everything_else(ckpt, tmp_path):
    clone = tmp_path / "clone"
    assert export_folder(ckpt, clone) == 0
    (clone / ".git").mkdir()
    (clone / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (clone / "LICENSE").write_text("MIT")
    (clone / "notes.md").write_text("trained on my photos")
    (clone / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    ours = {"model.safetensors", "config.json", "README.md"}
    theirs = {p: p.read_bytes() for p in clone.rglob("*") if p.is_file() and p.name not in ours}
    (clone / "config.json").write_text((clone / "config.json").read_text().replace('"weights": "', '"weights": "old '))
    grid = photo(tmp_path / "grid.png", seed=2)
    assert export_folder(ckpt, clone, "--samples", grid) == 0
    assert {p: p.read_bytes() for p in theirs} == theirs
    assert "old " not in (clone / "config.json").read_text()
    assert (clone / "samples.png").read_bytes() == grid.read_bytes()
    assert "](samples.png)" in (clone / "README.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clone", "grid.png"]  # no temporary folder left
    assert not [p for p in clone.iterdir() if ".tmp" in p.name]
    load_generator(clone)


# ------------------------------------------------------------------ damaged weights and settings
def folder_with(ckpt, tmp_path, config=None, generator=None, state=None):
    """An exported model folder, its config.json replaced (text), its generator settings or weights edited."""
    model, hparams = load_generator(ckpt)
    folder = save_model_folder(model, hparams, tmp_path / "model")
    if generator is not None:
        settings = json.loads((folder / "config.json").read_text())
        settings["generator"].update(generator)
        config = json.dumps(settings)
    if config is not None:
        (folder / "config.json").write_text(config)
    if state is not None:
        weights = load_file(folder / "model.safetensors")
        state(weights)
        save_file(weights, folder / "model.safetensors")
    return folder


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_at_load_naming_the_file_and_tensor(ckpt, tmp_path, capsys, value):
    contents = torch.load(ckpt, weights_only=True)
    contents["state_dict"]["generator.encoders.0.weight"][0, 0, 0, 0] = value
    bad = tmp_path / "diverged.ckpt"
    torch.save(contents, bad)
    with pytest.raises(CheckpointError, match=r"diverged\.ckpt.*encoders\.0\.weight.*NaN or Inf"):
        load_generator(bad)

    def poison(weights):
        weights["decoders.1.1.weight"][0, 0, 0, 0] = value

    folder = folder_with(ckpt, tmp_path, state=poison)
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*decoders\.1\.1\.weight.*NaN or Inf"):
        load_generator(folder)
    src = photo(tmp_path / "in.png")
    for source in (bad, folder):
        assert colorize([str(src), "--ckpt", str(source), "--out", str(tmp_path / "out")]) == 1
        assert "NaN or Inf" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.complex64])
def test_weights_that_are_not_floating_point_are_refused_naming_the_file_and_tensor(ckpt, tmp_path, dtype):
    def retype(weights):
        weights["encoders.0.weight"] = weights["encoders.0.weight"].to(dtype)

    folder = folder_with(ckpt, tmp_path, state=retype)
    with pytest.raises(CheckpointError, match=r"model\.safetensors: tensor encoders\.0\.weight has dtype"):
        load_generator(folder)
    contents = torch.load(ckpt, weights_only=True)
    key = "generator.encoders.0.weight"
    contents["state_dict"][key] = contents["state_dict"][key].to(dtype)
    torch.save(contents, tmp_path / "retyped.ckpt")
    with pytest.raises(CheckpointError, match=r"retyped\.ckpt: tensor encoders\.0\.weight has dtype"):
        load_generator(tmp_path / "retyped.ckpt")


@pytest.mark.parametrize(
    "settings, words",
    [
        ({"ngf": 16}, r"config\.json: generator does not describe the weights .*encoders\.0\.weight has shape"),
        ({"ngf": 10**6}, r"generator\.ngf=1000000 must be an integer from 1 to 512"),
        ({"noise_channels": 10**6}, r"generator\.noise_channels=1000000 must be an integer from 0 to 64"),
        ({"depth": 60}, r"generator\.depth=60 must be an integer from 1 to 8"),
        ({"image_size": 10**7, "depth": 5}, r"generator\.image_size=10000000 must be an integer from 1 to 2048"),
    ],
)
def test_settings_are_checked_against_bounds_and_the_weights_before_anything_is_built(
    ckpt, tmp_path, monkeypatch, settings, words
):
    folder = folder_with(ckpt, tmp_path, generator=settings)
    real = checkpoint_module.build_generator

    def laid_out_only(cfg):
        if torch.get_default_device().type != "meta":
            raise AssertionError(f"a generator was built from settings not yet checked: {cfg}")
        return real(cfg)

    monkeypatch.setattr(checkpoint_module, "build_generator", laid_out_only)
    with pytest.raises(CheckpointError, match=words):
        load_generator(folder)


DAMAGED_CONFIGS = {
    "a list": ("[1, 2]", "holds a JSON list"),
    "not JSON": ("{format: colorgan", "cannot be read as JSON"),
    "no generator": ('{"format": "colorgan-generator"}', '"generator" is missing'),
    "generator a string": ('{"format": "colorgan-generator", "generator": "unet"}', '"generator" is not an object'),
    "huge": ('{"format": "colorgan-generator", "pad": "' + "x" * 2_000_000 + '"}', "bytes, far more than"),
    "deeply nested": ("[" * 100_000 + "]" * 100_000, "cannot be read as JSON"),
    "unknown norm": ({"norm": "sparkle"}, "generator.norm='sparkle' is not one of"),
    "negative ngf": ({"ngf": -8}, "generator.ngf=-8 must be an integer"),
    "negative size": ({"image_size": -32}, "generator.image_size=-32 must be an integer"),
    "size a string": ({"image_size": "32"}, "generator.image_size='32' must be an integer"),
    "unknown network": ({"name": "transformer"}, "generator.name='transformer' is not one of"),
}


@pytest.mark.parametrize("case", DAMAGED_CONFIGS)
def test_every_damaged_config_is_one_line_naming_the_file(ckpt, tmp_path, capsys, case):
    config, words = DAMAGED_CONFIGS[case]
    folder = folder_with(ckpt, tmp_path, **({"generator": config} if isinstance(config, dict) else {"config": config}))
    src = photo(tmp_path / "in.png")
    assert colorize([str(src), "--ckpt", str(folder), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert str(folder / "config.json") in err and words in err, err
    assert len(err.strip().splitlines()) == 1 and len(err) < 600, err


def test_a_model_folder_without_its_config_is_named(ckpt, tmp_path, capsys):
    folder = folder_with(ckpt, tmp_path)
    (folder / "config.json").unlink()
    src = photo(tmp_path / "in.png")
    assert colorize([str(src), "--ckpt", str(folder), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert f"{folder} holds model.safetensors but no config.json" in err and "colorgan-export" in err, err


@pytest.mark.parametrize(
    "option, content, words",
    [
        ("--metrics", "[1, 2, 3]", "holds a JSON list, not the object"),
        ("--metrics", "{psnr: 1", "cannot be read as JSON"),
        ("--samples", "a sample grid, honestly", "is not an image"),
    ],
)
def test_export_names_a_metrics_or_samples_file_it_cannot_use_before_any_work(
    ckpt, tmp_path, capsys, monkeypatch, option, content, words
):
    given = tmp_path / "given"
    given.write_text(content)

    def refuse(*args, **kwargs):
        raise AssertionError("the checkpoint was read before the options were checked")

    monkeypatch.setattr("colorgan.apps.export.read_generator_source", refuse)
    out = tmp_path / "model"
    assert export_folder(ckpt, out, option, given) == 1
    err = capsys.readouterr().err
    assert f"{option} {given}" in err and words in err and "Traceback" not in err, err
    assert not out.exists()


# ------------------------------------------------------------------ what a kill leaves behind
def test_a_killed_exports_leftovers_are_removed_by_the_next_and_permissions_follow_the_umask(ckpt, tmp_path):
    pid = dead_pid()
    for what in ("building", "old"):
        left = tmp_path / f".model.{pid}.{what}"
        left.mkdir()
        (left / "model.safetensors").write_bytes(b"half")
    alive = tmp_path / f".model.{os.getppid()}.building"  # a writer still at work keeps its folder
    alive.mkdir()
    assert export_folder(ckpt, tmp_path / "model") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [alive.name, "model"]
    folder = tmp_path / "model"
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
    assert modes["model.safetensors"] == modes["config.json"] == modes["README.md"], modes
