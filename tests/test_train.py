"""train.py through Hydra for every experiment; the pretrain -> GAN hand-over; resuming."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback
from omegaconf import OmegaConf

from colorgan.checkpoint import CheckpointError, load_checkpoint, load_generator
from colorgan.train.build import build, train
from tests.conftest import CONF, train_overrides

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
DEBUG_CONFIGS = sorted(p.stem for p in (CONF / "debug").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_names_its_runs_after_itself(make_cfg, experiment):
    assert make_cfg([f"experiment={experiment}"]).task_name == experiment  # logs/<experiment>/, as the README says


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_runs_fast_dev_run(make_cfg, experiment):
    summary = train(make_cfg(train_overrides(experiment, "trainer.fast_dev_run=true")))
    metrics = summary["metrics"]
    assert torch.isfinite(torch.tensor(metrics["train/g_l1"]))
    assert "val/psnr" in metrics and "val/ssim" in metrics and "val/l1_ab" in metrics
    assert ("train/d_loss" in metrics) == experiment.endswith("_gan")


def test_the_discriminator_choice_makes_the_stage(make_cfg):
    """model/discriminator=none: no D and no adversarial term; patchgan: a D, and lambda_gan back on."""
    _, pretraining, _ = build(make_cfg(train_overrides("cifar_pretrain")))
    assert pretraining.discriminator is None and pretraining.hparams.lambda_gan == 0
    cfg = make_cfg(train_overrides("cifar_pretrain", "model/discriminator=patchgan"))
    _, gan, _ = build(cfg)
    assert gan.discriminator is not None and gan.hparams.lambda_gan == cfg.model.lambda_gan > 0


def test_the_image_size_is_set_once_by_the_data(make_cfg):
    cfg = make_cfg(train_overrides("photos_pretrain", "data.image_size=96"))
    _, model, _ = build(cfg)
    assert cfg.model.generator.image_size == 96 and model.hparams.generator["image_size"] == 96  # what evaluate reads


def test_every_debug_config_is_tested():
    assert {"default", "fast_dev_run", "limit_batches", "overfit", "profiler", "traceback"} <= set(DEBUG_CONFIGS)


@pytest.mark.parametrize("name", DEBUG_CONFIGS)
def test_every_debug_config_composes_with_every_experiment(make_cfg, name):
    for experiment in EXPERIMENTS:
        plain = make_cfg(train_overrides(experiment))
        cfg = make_cfg(train_overrides(experiment, f"debug={name}"))
        assert cfg.debug is True  # full tracebacks
        if name == "traceback":  # debug=true on the command line: nothing else changes
            assert {**OmegaConf.to_container(cfg), "debug": False} == OmegaConf.to_container(plain)
            continue
        assert cfg.task_name == "debug" and cfg.callbacks is None and cfg.logger is None
        assert (cfg.trainer.accelerator, cfg.trainer.devices, cfg.data.num_workers) == ("cpu", 1, 0)
        assert cfg.trainer.enable_checkpointing is False


def test_debug_fast_dev_run_trains_one_batch(make_cfg, tmp_path):
    summary = train(make_cfg(train_overrides("cifar_gan", "debug=fast_dev_run"), output_dir=tmp_path))
    assert summary["epochs"] == 1 and summary["last_checkpoint"] is None
    assert torch.isfinite(torch.tensor(summary["metrics"]["train/d_loss"])) and "val/l1_ab" in summary["metrics"]


def test_debug_overfit_trains_on_the_same_batches_every_epoch(make_cfg, tmp_path):
    """CIFAR-10's on-device batches too, which shuffle themselves (Lightning reorders only DataLoaders)."""
    cfg = make_cfg(
        train_overrides("cifar_pretrain", "debug=overfit", "trainer.max_epochs=2", "trainer.overfit_batches=2"),
        output_dir=tmp_path,
    )
    assert cfg.data.on_device
    seen: dict[int, list] = {0: [], 1: []}

    class Batches(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            # labels and per-image sums: the same images in the same order, whichever way each was flipped
            seen[trainer.current_epoch].append((batch["label"].tolist(), batch["rgb"].sum(dim=(1, 2, 3)).tolist()))

    datamodule, model, trainer = build(cfg)
    trainer.callbacks.append(Batches())
    trainer.fit(model, datamodule=datamodule)
    assert len(seen[0]) == 2 and seen[0] == seen[1]


def pretrain(make_cfg, out: Path) -> Path:
    cfg = make_cfg(train_overrides("cifar_pretrain", "trainer.max_epochs=1"), output_dir=out)
    summary = train(cfg)
    assert (out / "samples" / "epoch_000.png").is_file()
    assert Path(summary["best_checkpoint"]).is_file()
    return Path(summary["last_checkpoint"])


@pytest.mark.slow
def test_pretrain_checkpoint_starts_the_gan_stage(make_cfg, tmp_path):
    ckpt = pretrain(make_cfg, tmp_path / "pre")
    saved = {
        k[len("generator.") :]: v for k, v in load_checkpoint(ckpt)["state_dict"].items() if k.startswith("generator.")
    }
    cfg = make_cfg(
        train_overrides("cifar_gan", f"model.init_from={ckpt}", "trainer.max_epochs=1"), output_dir=tmp_path / "gan"
    )
    datamodule, model, trainer = build(cfg)
    model.setup("fit")
    for name, tensor in model.generator.state_dict().items():
        assert torch.equal(tensor, saved[name]), name
    trainer.fit(model, datamodule=datamodule)
    assert model.discriminator is not None and trainer.current_epoch == 1


def test_init_from_errors_name_the_file(make_cfg, tmp_path):
    missing = tmp_path / "nope.ckpt"
    cfg = make_cfg(train_overrides("cifar_gan", f"model.init_from={missing}", "trainer.fast_dev_run=true"))
    with pytest.raises(CheckpointError, match=r"nope\.ckpt"):
        train(cfg)
    no_generator = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"encoder.weight": torch.zeros(1)}}, no_generator)
    cfg = make_cfg(train_overrides("cifar_gan", f"model.init_from={no_generator}", "trainer.fast_dev_run=true"))
    with pytest.raises(CheckpointError, match="no generator"):
        train(cfg)


@pytest.mark.slow
def test_resume_restores_both_optimizers_and_schedulers(make_cfg, tmp_path):
    first = train(make_cfg(train_overrides("cifar_gan", "trainer.max_epochs=1"), output_dir=tmp_path / "a"))
    ckpt = torch.load(first["last_checkpoint"], weights_only=True)
    steps_per_epoch = ckpt["optimizer_states"][0]["state"][0]["step"].item()
    cfg = make_cfg(
        train_overrides("cifar_gan", "trainer.max_epochs=2", f"ckpt_path={first['last_checkpoint']}"),
        output_dir=tmp_path / "b",
    )
    datamodule, model, trainer = build(cfg)
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    opt_g, opt_d = trainer.optimizers
    for opt in (opt_g, opt_d):
        assert next(iter(opt.state.values()))["step"].item() == 2 * steps_per_epoch
    assert len(trainer.lr_scheduler_configs) == 2
    assert all(cfg.scheduler.last_epoch == 2 * steps_per_epoch for cfg in trainer.lr_scheduler_configs)
    assert trainer.current_epoch == 2


@pytest.mark.slow
def test_a_noise_input_run_starts_from_a_pretrained_generator_that_ignores_z_at_first(make_cfg, tmp_path):
    ckpt = pretrain(make_cfg, tmp_path / "pre")
    cfg = make_cfg(
        train_overrides(
            "cifar_gan",
            f"model.init_from={ckpt}",
            "model.generator.noise_channels=2",
            "model.generator.noise=vector",
            "model.generator.dropout=0",
        ),
        output_dir=tmp_path / "gan",
    )
    _, model, _ = build(cfg)
    model.setup("fit")
    pretrained, _ = load_generator(ckpt)
    L = torch.rand(2, 1, 32, 32) * 2 - 1
    model.generator.train()  # z random
    model.generator.apply(lambda m: m.eval() if isinstance(m, torch.nn.BatchNorm2d) else None)
    with torch.no_grad():
        torch.testing.assert_close(model.generator(L), pretrained(L), atol=1e-5, rtol=0)
