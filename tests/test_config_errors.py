"""Wrong paths and configs: each stops before training with a message that names the key or the file."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException, MissingConfigException

from colorgan.checkpoint import CheckpointError
from colorgan.data import DataNotFoundError
from colorgan.evaluate.evaluator import evaluate
from colorgan.models import build_generator
from colorgan.runs.folder import OutputNotWritableError
from colorgan.train.build import train
from colorgan.train.config_checks import ConfigError
from tests.conftest import train_overrides

SHORT = ["trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "trainer.num_sanity_val_steps=0"]
UNET8 = {"name": "unet", "image_size": 32, "ngf": 8, "norm": "batch", "dropout": 0.5, "depth": None}
_cache: dict[str, Path] = {}


@pytest.fixture
def pretrain_ckpt(make_cfg, tmp_path_factory) -> Path:
    """A full training checkpoint of the tiny CIFAR pretraining run (made once for this module)."""
    if "pretrain" not in _cache:
        out = tmp_path_factory.mktemp("pretrain")
        summary = train(make_cfg(train_overrides("cifar_pretrain", "trainer.max_epochs=1", *SHORT), output_dir=out))
        _cache["pretrain"] = Path(summary["last_checkpoint"])
    return _cache["pretrain"]


# ------------------------------------------------------------------------------------------- Hydra
@pytest.mark.parametrize(
    ("override", "choices"),
    [
        ("data=cifar100", ["cifar10", "folder"]),
        ("experiment=cifar_pretrian", ["cifar_pretrain", "photos_gan"]),
        ("model/generator=unet3", ["unet", "resnet18_unet"]),
        ("model/discriminator=patch", ["patchgan", "none"]),
        ("debug=fastdevrun", ["fast_dev_run", "limit_batches", "overfit", "profiler"]),
    ],
)
def test_unknown_group_choice_lists_the_valid_ones(make_cfg, override, choices):
    with pytest.raises(MissingConfigException) as info:
        make_cfg([override])
    group, name = override.split("=")
    assert f"Could not find '{group}/{name}'" in str(info.value)
    assert f"Available options in '{group}'" in str(info.value)
    assert all(f"\t{choice}\n" in str(info.value) for choice in choices)


def test_unknown_key_is_named(make_cfg):
    with pytest.raises(ConfigCompositionException, match=r"Could not override 'model\.lamda_l1'") as info:
        make_cfg(["model.lamda_l1=1"])
    assert "+model.lamda_l1=1" in str(info.value)  # how to add a new key on purpose
    assert "Key 'lamda_l1' is not in struct" in str(info.value.__cause__)


# ------------------------------------------------------------------------------------------ values
@pytest.mark.parametrize(
    ("experiment", "override", "named"),
    [
        ("cifar_pretrain", "model.lambda_l1=-1", "model.lambda_l1=-1"),
        ("cifar_gan", "model.lambda_gan=-0.5", "model.lambda_gan=-0.5"),
        ("cifar_pretrain", "model.lambda_l1=0", "model.lambda_l1=0"),
        ("cifar_pretrain", "model.lr=abc", "model.lr='abc'"),
        ("cifar_pretrain", "model.generator.depth=6", "model.generator.depth=6"),
        ("photos_pretrain", "data.image_size=16", "data.image_size=16"),
        ("cifar_gan", "model.discriminator.n_layers=5", "model.discriminator.n_layers=5"),
        ("cifar_pretrain", "data.batch_size=0", "data.batch_size=0"),
        ("cifar_gan", "model.gan_mode=wgan", "model.gan_mode='wgan'"),
        ("photos_pretrain", "data.on_bad_image=ignore", "data.on_bad_image='ignore'"),
        ("cifar_pretrain", "model.generator.noise=global", "model.generator.noise='global'"),
        ("photos_gan", "model.generator.norm=layer", "model.generator.norm='layer'"),
        ("cifar_gan", "model.gradient_clip_val=-1", "model.gradient_clip_val=-1"),
    ],
)
def test_invalid_values_stop_before_any_data_is_read(make_cfg, tmp_path, experiment, override, named):
    cfg = make_cfg([*train_overrides(experiment, override), f"paths.data_dir={tmp_path / 'no-data-here'}"])
    with pytest.raises(ConfigError) as info:
        train(cfg)
    assert str(info.value).startswith(f"{named} is invalid: ")


NO_DATA = ["data.download=false"]  # a check that lets a value through would find no data, never the network


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("data.image_size=3", "data.image_size=3"),  # CIFAR-10 delivers 32 x 32 whatever the config says
        ("data.image_size=64", "data.image_size=64"),
        ("model.generator.image_size=64", "model.generator.image_size=64"),  # follows data.image_size
        ("model.lambda_l1=inf", "model.lambda_l1=inf"),
        ("model.lambda_l1=nan", "model.lambda_l1=nan"),
        ("model.lambda_gan=inf", "model.lambda_gan=inf"),
        ("model.lr=inf", "model.lr=inf"),
    ],
)
def test_settings_that_cannot_apply_are_refused_naming_the_key(make_cfg, tmp_path, override, named):
    cfg = make_cfg([*train_overrides("cifar_pretrain", override, *NO_DATA), f"paths.data_dir={tmp_path / 'none'}"])
    with pytest.raises(ConfigError) as info:
        train(cfg)
    assert str(info.value).startswith(f"{named} is invalid: ")


@pytest.mark.parametrize(
    ("experiment", "override", "named", "fix"),
    [
        # the GAN stage is chosen by the discriminator, not by lambda_gan: each says which choice to make
        ("cifar_pretrain", "model.lambda_gan=1", "model.lambda_gan=1", "choose model/discriminator=patchgan"),
        ("cifar_gan", "model.lambda_gan=0", "model.lambda_gan=0", "model/discriminator=none"),
        # G and D are stepped by the module, which clips them: the Trainer's key is refused for the model's
        ("cifar_gan", "+trainer.gradient_clip_val=1.0", "trainer.gradient_clip_val=1.0", "model.gradient_clip_val"),
    ],
)
def test_retired_spellings_are_refused_naming_the_new_key(make_cfg, tmp_path, experiment, override, named, fix):
    cfg = make_cfg([*train_overrides(experiment, override, *NO_DATA), f"paths.data_dir={tmp_path / 'none'}"])
    with pytest.raises(ConfigError) as info:
        train(cfg)
    assert str(info.value).startswith(f"{named} is invalid: ") and fix in str(info.value)


def test_command_line_keeps_debug_true_and_sends_trainer_clipping_to_its_refusal(make_cfg, tmp_path):
    from train import command_line

    argv = ["train.py", "debug=true", "debug=False", "trainer.gradient_clip_val=1", "model.lr=1e-3"]
    assert command_line(argv) == ["train.py", "debug=traceback", "+trainer.gradient_clip_val=1", "model.lr=1e-3"]
    cfg = make_cfg([*train_overrides("cifar_gan", *NO_DATA), *command_line(argv)[1:]])
    assert cfg.debug is True
    with pytest.raises(ConfigError, match=r"^trainer\.gradient_clip_val=1 is invalid: .*model\.gradient_clip_val"):
        train(cfg)


def test_cifar_image_size_message_says_the_data_is_32(make_cfg, tmp_path):
    cfg = make_cfg([*train_overrides("cifar_pretrain", "data.image_size=3", *NO_DATA), f"paths.data_dir={tmp_path}"])
    with pytest.raises(ConfigError, match=r"CIFAR-10 images are 32 x 32"):
        train(cfg)


@pytest.mark.parametrize(
    ("key", "below"),
    [("callbacks.model_checkpoint.dirpath", "checkpoints"), ("logger.csv.save_dir", "logs")],
)
def test_unwritable_output_places_are_named_before_any_data_is_read(make_cfg, tmp_path, key, below):
    blocker = tmp_path / "a_file"
    blocker.write_text("a file where a folder should be")
    place = blocker / below
    overrides = train_overrides("cifar_pretrain", f"{key}={place}", *NO_DATA)
    cfg = make_cfg([*overrides, f"paths.data_dir={tmp_path / 'none'}"], output_dir=tmp_path / "run")
    with pytest.raises(OutputNotWritableError) as info:
        train(cfg)
    assert f"{key}={place}" in str(info.value) and f"{blocker} is a file" in str(info.value)


def test_depth_message_says_what_the_image_size_allows(make_cfg):
    with pytest.raises(ConfigError, match=r"data\.image_size=32 allows at most 5"):
        train(make_cfg(train_overrides("cifar_pretrain", "model.generator.depth=6")))


# ------------------------------------------------------------------------------------------- data
def test_missing_photo_folder_is_named(make_cfg, tmp_path):
    missing = tmp_path / "holiday"
    with pytest.raises(DataNotFoundError, match=rf"data\.root={missing} is not a folder"):
        train(make_cfg(train_overrides("photos_pretrain", f"data.root={missing}", "trainer.fast_dev_run=true")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataNotFoundError, match=r"no images \(.*\) found under .*empty"):
        train(
            make_cfg(train_overrides("photos_pretrain", f"data.root={tmp_path / 'empty'}", "trainer.fast_dev_run=true"))
        )


def test_cifar_missing_and_offline_says_where_and_how_to_fix(make_cfg, tmp_path, monkeypatch):
    def offline(folder: Path) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("colorgan.data.cifar10._download_with_torchvision", offline)
    cfg = make_cfg(train_overrides("cifar_pretrain", "trainer.fast_dev_run=true", f"paths.data_dir={tmp_path}"))
    with pytest.raises(DataNotFoundError) as info:
        train(cfg)
    message = str(info.value)
    assert f"CIFAR-10 not found in {tmp_path / 'cifar10'}" in message and "download failed (URLError" in message
    assert "train.npz and test.npz" in message and "COLORGAN_DATA_DIR" in message


# ------------------------------------------------------------------------------------- checkpoints
def write_bad_checkpoint(kind: str, folder: Path, real: Path) -> Path:
    """Checkpoints users do pass by mistake."""
    path = folder / f"{kind}.ckpt"
    if kind == "truncated":
        data = real.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "not_colorgan":  # e.g. torchvision weights
        torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.bias": torch.zeros(1000)}, path)
    elif kind == "generator_only":  # what an export or a hand-made file holds: no optimizer or loop state
        weights = build_generator(UNET8).state_dict()
        torch.save(
            {"state_dict": {f"generator.{k}": v for k, v in weights.items()}, "hyper_parameters": {"generator": UNET8}},
            path,
        )
    elif kind == "wider_generator":  # weights of ngf=16 under hyper-parameters saying ngf=8
        weights = build_generator({**UNET8, "ngf": 16}).state_dict()
        torch.save(
            {"state_dict": {f"generator.{k}": v for k, v in weights.items()}, "hyper_parameters": {"generator": UNET8}},
            path,
        )
    return path


EVAL_CASES = {
    "missing": "does not exist",
    "empty": "is empty (0 bytes)",
    "truncated": "is truncated or corrupt",
    "not_colorgan": "does not say which generator it holds",
    "wider_generator": "does not describe the weights",
}


@pytest.mark.parametrize("kind", sorted(EVAL_CASES))
def test_evaluate_names_a_bad_checkpoint(make_cfg, tmp_path, pretrain_ckpt, kind):
    path = write_bad_checkpoint(kind, tmp_path, pretrain_ckpt)
    with pytest.raises(CheckpointError) as info:
        evaluate(make_cfg([f"ckpt_path={path}", "device=cpu"], config_name="eval", output_dir=tmp_path / "eval"))
    assert str(path) in str(info.value) and EVAL_CASES[kind] in str(info.value)


@pytest.mark.parametrize(
    ("kind", "words"),
    [("truncated", "is truncated or corrupt"), ("wider_generator", "does not match model.generator")],
)
def test_init_from_names_a_bad_checkpoint(make_cfg, tmp_path, pretrain_ckpt, kind, words):
    path = write_bad_checkpoint(kind, tmp_path, pretrain_ckpt)
    cfg = make_cfg(train_overrides("cifar_gan", f"model.init_from={path}", "trainer.fast_dev_run=true"))
    with pytest.raises(CheckpointError) as info:
        train(cfg)
    assert str(path) in str(info.value) and words in str(info.value)


RESUME_CASES = {
    "missing": "does not exist",
    "truncated": "is truncated or corrupt",
    "generator_only": "is not a full training checkpoint",
    "other_model": "was written by a different model (missing",
}


@pytest.mark.parametrize("kind", sorted(RESUME_CASES))
def test_resume_names_a_bad_checkpoint_before_training(make_cfg, tmp_path, pretrain_ckpt, kind):
    path = pretrain_ckpt if kind == "other_model" else write_bad_checkpoint(kind, tmp_path, pretrain_ckpt)
    cfg = make_cfg(train_overrides("cifar_gan", f"ckpt_path={path}", *SHORT), output_dir=tmp_path / "run")
    with pytest.raises(CheckpointError) as info:
        train(cfg)  # a pretraining checkpoint has no discriminator: resuming the GAN stage from it cannot work
    assert str(path) in str(info.value) and RESUME_CASES[kind] in str(info.value)
    assert not (tmp_path / "run" / "checkpoints").exists()


# ------------------------------------------------------------------------------------------- types
@pytest.mark.parametrize(
    ("override", "named", "need"),
    [
        ('data.flip="false"', "data.flip='false'", "true or false"),  # a non-empty string would read as true
        ("model.channels_last=no", "model.channels_last='no'", "true or false"),
        ("data.flip=1", "data.flip=1", "true or false"),  # an int where a boolean is expected
        ("data.on_device=0", "data.on_device=0", "true or false"),
        ("data.batch_size=true", "data.batch_size=True", "an integer"),
        ('trainer.max_epochs="3"', "trainer.max_epochs='3'", "an integer"),
        ("model.generator.ngf=8.5", "model.generator.ngf=8.5", "an integer"),
        ("+callbacks.model_checkpoint.verbose=yes", "callbacks.model_checkpoint.verbose='yes'", "true or false"),
    ],
)
def test_values_of_the_wrong_type_are_refused_naming_the_key(make_cfg, tmp_path, override, named, need):
    cfg = make_cfg([*train_overrides("cifar_gan", override, *NO_DATA), f"paths.data_dir={tmp_path / 'none'}"])
    with pytest.raises(ConfigError) as info:
        train(cfg)
    assert str(info.value).startswith(f"{named} is invalid: it must be {need}")


def test_evaluate_refuses_a_data_value_of_the_wrong_type_before_loading_anything(make_cfg, tmp_path):
    cfg = make_cfg(["ckpt_path=not-read.ckpt", 'data.flip="false"'], config_name="eval")
    with pytest.raises(ConfigError, match=r"^data\.flip='false' is invalid"):
        evaluate(cfg)
