"""Resume and reproducibility: a train.py killed mid-epoch (SIGKILL) continues from its step
checkpoint with ``ckpt_path=last``, optimizers, schedulers and counters included; the same seed
with ``trainer.deterministic=true`` gives the same losses. Resuming keeps the run's history (metrics,
each attempt's config); a wrong resume changes nothing; asking to resume never silently starts over."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from colorgan.checkpoint import CheckpointError, load_checkpoint
from colorgan.train.build import build, train
from tests.cli import csv_rows, files_of, output, run_script
from tests.conftest import HANG_GUARD_S, ROOT, train_overrides

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


@pytest.mark.slow
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
        deadline = time.monotonic() + HANG_GUARD_S
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


@pytest.mark.slow
def test_same_seed_and_deterministic_give_the_same_losses(make_cfg, tmp_path, restore_determinism):
    first = first_losses(make_cfg, tmp_path, 7, "a")
    again = first_losses(make_cfg, tmp_path, 7, "b")
    other = first_losses(make_cfg, tmp_path, 8, "c")
    assert len(first) == 3
    assert first == again  # bit for bit: init, data order, flips and dropout all follow the seed
    assert first != other


# ------------------------------------------------------------------------ resuming keeps history
PRETRAIN = [*train_overrides("cifar_pretrain"), "trainer.num_sanity_val_steps=0", "trainer.log_every_n_steps=1"]
SHORT = ["trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "trainer.num_sanity_val_steps=0"]


@pytest.fixture(scope="module")
def finished_run(data_dir, tmp_path_factory) -> Path:
    """A 2-epoch cifar_pretrain run made by train.py, as a user makes one (copied by each test)."""
    run = tmp_path_factory.mktemp("finished") / "run"
    overrides = [*PRETRAIN, "trainer.max_epochs=2", f"paths.data_dir={data_dir}", f"hydra.run.dir={run}"]
    result = run_script("train.py", *overrides)
    assert result.returncode == 0, output(result)[-4000:]
    return run


def logged_epochs(run: Path) -> set[int]:
    return {int(float(row["epoch"])) for row in csv_rows(run / "csv" / "metrics.csv") if row.get("epoch")}


@pytest.mark.slow
def test_resumed_run_keeps_earlier_metrics_and_each_attempts_config(finished_run, data_dir, tmp_path):
    run = Path(shutil.copytree(finished_run, tmp_path / "run"))
    assert logged_epochs(run) == {0, 1}
    earlier = [r for r in csv_rows(run / "csv" / "metrics.csv") if r.get("val/l1_ab")]
    first_overrides = (run / ".hydra" / "overrides.yaml").read_text()
    first_config = (run / ".hydra" / "config.yaml").read_text()

    # as the README says: the same folder, a longer run, ckpt_path=last
    resume = [*PRETRAIN, "trainer.max_epochs=3", f"paths.data_dir={data_dir}", f"hydra.run.dir={run}", "ckpt_path=last"]
    result = run_script("train.py", *resume)
    assert result.returncode == 0, output(result)[-4000:]

    assert logged_epochs(run) == {0, 1, 2}  # epochs 0-1 are still there, epoch 2 appended
    kept = [r for r in csv_rows(run / "csv" / "metrics.csv") if r.get("val/l1_ab")]
    assert [r["val/l1_ab"] for r in kept[: len(earlier)]] == [r["val/l1_ab"] for r in earlier]
    assert len(kept) == len(earlier) + 1
    # each attempt's Hydra config is kept: .hydra/ is the latest, .hydra/attempt_1/ the first
    assert (run / ".hydra" / "attempt_1" / "overrides.yaml").read_text() == first_overrides
    assert (run / ".hydra" / "attempt_1" / "config.yaml").read_text() == first_config
    assert "ckpt_path=last" in (run / ".hydra" / "overrides.yaml").read_text()


@pytest.mark.slow
def test_resuming_with_another_experiment_changes_nothing_in_the_folder(finished_run, data_dir, tmp_path):
    run = Path(shutil.copytree(finished_run, tmp_path / "run"))
    before = files_of(run)
    wrong = [*train_overrides("cifar_gan"), f"paths.data_dir={data_dir}", f"hydra.run.dir={run}", "ckpt_path=last"]
    result = run_script("train.py", *wrong)
    text = output(result)
    assert result.returncode == 1, text[-4000:]
    assert f"checkpoint {run / 'checkpoints' / 'last.ckpt'} was written by a different model" in text
    assert "Traceback" not in text and "Missing key" not in text
    assert files_of(run) == before  # metrics.csv, .hydra/*.yaml, checkpoints: all as they were, nothing added


def test_ckpt_path_last_without_a_checkpoint_stops_and_says_how_to_point_at_the_run(make_cfg, tmp_path):
    run = tmp_path / "run"
    cfg = make_cfg(train_overrides("cifar_pretrain", "ckpt_path=last", *SHORT), output_dir=run)
    with pytest.raises(CheckpointError) as info:
        train(cfg)
    message = str(info.value)
    assert f"no last*.ckpt in {run / 'checkpoints'}" in message
    assert "hydra.run.dir=" in message and "ckpt_path=last_or_new" in message
    assert not (run / "csv").exists() and not (run / "checkpoints").exists()  # nothing was written


@pytest.mark.slow
def test_forgotten_run_dir_with_ckpt_path_last_stops_and_leaves_no_new_folder(data_dir, tmp_path):
    logs = tmp_path / "logs"
    earlier = logs / "cifar_pretrain" / "runs" / "2020-01-01_00-00-00"
    (earlier / "checkpoints").mkdir(parents=True)
    (earlier / "checkpoints" / "last.ckpt").write_bytes(b"")
    overrides = [*PRETRAIN, "trainer.max_epochs=1", f"paths.data_dir={data_dir}", f"paths.log_dir={logs}"]
    result = run_script("train.py", *overrides, "ckpt_path=last")
    text = output(result)
    assert result.returncode == 1, text[-4000:]
    assert "ckpt_path=last" in text and f"hydra.run.dir={earlier}" in text and "ckpt_path=last_or_new" in text
    assert "Traceback" not in text
    assert sorted(p.name for p in earlier.parent.iterdir()) == [earlier.name]  # the new timestamped folder is gone


def test_last_or_new_starts_without_a_checkpoint_and_resumes_with_one(make_cfg, tmp_path):
    run = tmp_path / "run"
    overrides = train_overrides("cifar_pretrain", "ckpt_path=last_or_new", "trainer.max_epochs=1", *SHORT)
    first = train(make_cfg(overrides, output_dir=run))
    assert first["epochs"] == 1 and load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 2
    overrides = train_overrides("cifar_pretrain", "ckpt_path=last_or_new", "trainer.max_epochs=2", *SHORT)
    second = train(make_cfg(overrides, output_dir=run))
    assert second["epochs"] == 2
    ckpt = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert (ckpt["epoch"], ckpt["global_step"]) == (1, 4)  # went on from step 2, not from 0


class ReadMetricsFile(Callback):
    """What a kill -9 would leave: the rows of metrics.csv on disk at a given batch."""

    def __init__(self, at_batch: int) -> None:
        self.at_batch, self.rows = at_batch, -1

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: object, batch: object, batch_idx: int
    ) -> None:
        if batch_idx == self.at_batch:
            path = Path(trainer.default_root_dir) / "csv" / "metrics.csv"
            self.rows = len(csv_rows(path)) if path.exists() else 0


def test_metrics_reach_the_disk_at_every_logged_step(make_cfg, tmp_path):
    cfg = make_cfg(train_overrides("cifar_pretrain", "trainer.max_epochs=1", "trainer.log_every_n_steps=1", *SHORT[2:]))
    datamodule, model, trainer = build(cfg)
    reader = ReadMetricsFile(at_batch=4)
    trainer.callbacks.append(reader)
    trainer.fit(model, datamodule=datamodule)
    assert reader.rows >= 4  # batches 0-3 logged and flushed before batch 4 ended
