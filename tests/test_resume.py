"""Resume and reproducibility: a train.py killed mid-epoch (SIGKILL) continues from its step
checkpoint with ``ckpt_path=last``, optimizers, schedulers and counters included; the same seed
with ``trainer.deterministic=true`` gives the same losses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from colorgan.training import build
from tests.conftest import ROOT, train_overrides

BATCHES_PER_EPOCH = 6  # 48 training images of the tiny CIFAR, batch 8


class PauseAfterBatches(Callback):
    """Stands for a run that is killed mid-epoch: after ``batches`` batches, flag and wait."""

    def __init__(self, batches: int, flag: str) -> None:
        self.batches, self.flag = batches, Path(flag)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: object, batch: object, batch_idx: int
    ) -> None:
        if trainer.fit_loop.epoch_loop.batch_progress.total.processed == self.batches:
            self.flag.write_text(str(os.getpid()))
            time.sleep(600)


class Probe(Callback):
    """Where the resumed run starts, and every loss it logs."""

    def __init__(self) -> None:
        self.first_batch_idx: int | None = None
        self.losses: list[tuple[float, float]] = []

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.epoch, self.global_step = trainer.current_epoch, trainer.global_step
        self.optimizer_states = [
            {k: v.clone() if torch.is_tensor(v) else v for k, v in next(iter(opt.state.values()), {}).items()}
            for opt in trainer.optimizers
        ]
        self.scheduler_steps = [config.scheduler.last_epoch for config in trainer.lr_scheduler_configs]

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: object, batch_idx: int) -> None:
        if self.first_batch_idx is None:
            self.first_batch_idx = batch_idx

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: object, batch: object, batch_idx: int
    ) -> None:
        metrics = trainer.callback_metrics
        self.losses.append((float(metrics["train/g_l1_step"]), float(metrics["train/d_loss_step"])))


def test_sigkilled_run_resumes_mid_epoch_with_ckpt_path_last(data_dir, make_cfg, tmp_path):
    run, flag = tmp_path / "run", tmp_path / "paused"
    common = ["trainer.max_epochs=2", "callbacks.last_checkpoint.every_n_batches=2", "trainer.num_sanity_val_steps=0"]
    overrides = [
        *train_overrides("cifar_gan", *common),
        f"paths.data_dir={data_dir}",
        f"hydra.run.dir={run}",
        f"+callbacks.pause._target_={PauseAfterBatches.__module__}.PauseAfterBatches",
        "+callbacks.pause.batches=3",
        f"+callbacks.pause.flag={flag}",
    ]
    env = {**os.environ, "COLORGAN_ROOT": str(ROOT), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "train.py", *overrides], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 300
        while not flag.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert flag.exists(), proc.communicate(timeout=5)[0].decode()[-4000:] if proc.poll() is not None else "stuck"
        proc.send_signal(signal.SIGKILL)  # no handler, no clean-up: as an OOM kill or a lost node
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL

    # the step checkpoint of batch 2, written before the kill at batch 3
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert (ckpt["epoch"], ckpt["global_step"]) == (0, 4)  # 2 batches x (D step + G step)
    assert [int(s["state"][0]["step"]) for s in ckpt["optimizer_states"]] == [2, 2]

    # resume as documented: the same run folder (hydra.run.dir) and ckpt_path=last
    cfg = make_cfg(train_overrides("cifar_gan", *common, "ckpt_path=last"), output_dir=run)
    datamodule, model, trainer = build(cfg)
    probe = Probe()
    trainer.callbacks.append(probe)
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path)

    assert (probe.epoch, probe.global_step) == (0, 4)
    for restored, saved in zip(probe.optimizer_states, ckpt["optimizer_states"]):
        assert int(restored["step"]) == 2
        assert torch.equal(restored["exp_avg"], saved["state"][0]["exp_avg"])
        assert torch.equal(restored["exp_avg_sq"], saved["state"][0]["exp_avg_sq"])
    assert probe.scheduler_steps == [2, 2]  # the schedules step per batch: 2 batches were done
    assert probe.first_batch_idx == 2  # the epoch goes on where the checkpoint left it
    # ... and the run ends exactly where an uninterrupted one would: 2 epochs of 6 batches
    assert len(probe.losses) == BATCHES_PER_EPOCH - 2 + BATCHES_PER_EPOCH
    assert trainer.current_epoch == 2 and trainer.global_step == 2 * 2 * BATCHES_PER_EPOCH
    steps = [int(next(iter(opt.state.values()))["step"]) for opt in trainer.optimizers]
    assert steps == [2 * BATCHES_PER_EPOCH] * 2
    assert all(config.scheduler.last_epoch == 2 * BATCHES_PER_EPOCH for config in trainer.lr_scheduler_configs)
    final = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert (final["epoch"], final["global_step"]) == (1, 2 * 2 * BATCHES_PER_EPOCH)


@pytest.fixture
def restore_determinism(monkeypatch):
    """trainer.deterministic=true switches PyTorch to deterministic algorithms for the whole process."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(before)


def first_losses(make_cfg, tmp_path: Path, seed: int, name: str) -> list[tuple[float, float]]:
    cfg = make_cfg(
        train_overrides(
            "cifar_gan",
            f"seed={seed}",
            "trainer.deterministic=true",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=3",
            "trainer.limit_val_batches=0",
            "callbacks=none",
        ),
        output_dir=tmp_path / name,
    )
    datamodule, model, trainer = build(cfg)
    probe = Probe()
    trainer.callbacks.append(probe)
    trainer.fit(model, datamodule=datamodule)
    return probe.losses


def test_same_seed_and_deterministic_give_the_same_losses(make_cfg, tmp_path, restore_determinism):
    first = first_losses(make_cfg, tmp_path, 7, "a")
    again = first_losses(make_cfg, tmp_path, 7, "b")
    other = first_losses(make_cfg, tmp_path, 8, "c")
    assert len(first) == 3
    assert first == again  # bit for bit: init, data order, flips and dropout all follow the seed
    assert first != other
