"""train.py through Hydra for every experiment; the pretrain -> GAN hand-over; resuming."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from colorgan.checkpoint import CheckpointError, load_checkpoint, load_generator
from colorgan.training import build, train
from tests.conftest import CONF, train_overrides

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


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
