"""W&B without an account: the mode comes from config and credentials; a run's offline files hold
the config, losses, validation metrics, learning rates and captioned sample panels."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import pytest
from PIL import Image

from colorgan.runs.launch import run_task
from colorgan.runs.loggers import resolve_wandb_mode
from colorgan.train.build import train
from colorgan.train.config_checks import ConfigError
from tests.conftest import HANG_GUARD_S, train_overrides
from tests.wandb_offline import read_offline_run


@pytest.fixture
def no_wandb_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No key anywhere: no WANDB_API_KEY, no netrc entry; WANDB_MODE unset."""
    for var in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL", "WANDB_MODE"):
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("NETRC", str(home / ".netrc"))
    return home


def test_wandb_mode_is_offline_without_a_key_and_online_with_one(no_wandb_credentials, monkeypatch, caplog):
    assert resolve_wandb_mode("auto") == "offline"
    assert resolve_wandb_mode(None) == "offline"
    assert resolve_wandb_mode("dryrun") == "offline"
    assert resolve_wandb_mode("disabled") == "disabled"
    assert resolve_wandb_mode("online") == "offline"  # asked for, but no key: never a crash or a prompt
    assert "needs an API key" in caplog.text
    with pytest.raises(ConfigError, match=r"logger\.wandb\.mode"):
        resolve_wandb_mode("sometimes")

    netrc = no_wandb_credentials / ".netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "a" * 40 + "\n")
    netrc.chmod(0o600)
    assert resolve_wandb_mode("auto") == "online"  # what `wandb login` leaves behind
    assert resolve_wandb_mode("offline") == "offline"
    netrc.unlink()
    monkeypatch.setenv("WANDB_API_KEY", "b" * 40)
    assert resolve_wandb_mode("auto") == "online"


def test_wandb_mode_comes_from_config_or_wandb_mode(make_cfg, no_wandb_credentials, monkeypatch):
    assert make_cfg(["logger=wandb"]).logger.wandb.mode == "auto"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert make_cfg(["logger=wandb"]).logger.wandb.mode == "disabled"
    assert make_cfg(["logger=wandb", "logger.wandb.mode=offline"]).logger.wandb.mode == "offline"


@pytest.mark.slow
def test_wandb_run_logs_config_losses_metrics_lrs_and_sample_panels(make_cfg, no_wandb_credentials, tmp_path):
    out = tmp_path / "run"
    cfg = make_cfg(
        train_overrides(
            "cifar_gan",
            "logger=wandb",
            "trainer.max_epochs=2",
            "trainer.limit_train_batches=2",
            "trainer.limit_val_batches=1",
            "trainer.num_sanity_val_steps=0",
            "trainer.log_every_n_steps=1",
        ),
        output_dir=out,
    )
    run_task(train, cfg)

    assert "WANDB_MODE" not in os.environ  # the mode went to wandb.init, not into the process environment
    assert sys.modules["wandb"].run is None  # finished
    (run_dir,) = (out / "wandb").glob("offline-run-*")
    run = read_offline_run(run_dir, wait_s=HANG_GUARD_S)
    assert run.exit_code == 0
    assert run.name == f"cifar_gan-{out.name}" and run.group == "" and run.job_type == "cifar_gan"
    # the resolved Hydra config
    assert run.config["model"]["lambda_l1"] == cfg.model.lambda_l1 and run.config["data"]["batch_size"] == 8
    assert run.config["trainer"]["max_epochs"] == 2 and run.config["task_name"] == "cifar_gan"
    # losses and learning rates every step, validation metrics every epoch
    for key in ("train/g_l1_step", "train/g_gan_step", "train/d_loss_step", "train/d_real_step"):
        values = run.values(key)
        assert len(values) == 4 and all(math.isfinite(v) for v in values), key
    for key in ("val/l1_ab", "val/psnr", "val/ssim"):
        assert len(run.values(key)) == 2, key
    for key in ("lr/generator", "lr/discriminator"):  # constant for the first half, then decaying
        assert run.values(key) == pytest.approx([2e-4, 2e-4, 2e-4, 1e-4]), key
    # an image panel per validation epoch, captioned, with the PNG on disk
    panels = [row for row in run.history if "val/samples/filenames" in row]
    assert len(panels) == 2
    for epoch, row in enumerate(panels):
        assert row["val/samples/captions"] == [f"epoch {epoch}: gray | colorized | truth"]
        (name,) = row["val/samples/filenames"]
        with (
            Image.open(run_dir / "files" / name) as logged,
            Image.open(out / "samples" / f"epoch_{epoch:03d}.png") as grid,
        ):
            assert logged.size == grid.size and logged.tobytes() == grid.convert(logged.mode).tobytes()
    # panels sit on the same x axis as the metrics of their epoch
    steps = [row["trainer/global_step"] for row in run.history if "val/l1_ab" in row]
    assert [row["trainer/global_step"] for row in panels] == steps
    assert run.summary["val/psnr"] == pytest.approx(run.values("val/psnr")[-1])
