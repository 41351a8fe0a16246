"""Faults during a run: messy photo folders, NaN losses, kills while saving, SIGTERM pre-emption."""

from __future__ import annotations

import gc
import json
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback
from PIL import Image

from colorgan.checkpoint import AtomicCheckpointIO, load_checkpoint
from colorgan.data import DataNotFoundError, FolderDataModule
from colorgan.data.datasets import WORKER_SIGTERM_GRACE_S
from colorgan.data.images import BadImageError
from colorgan.evaluate.evaluator import evaluate
from colorgan.models import build_generator
from colorgan.train.build import NoStepTakenError, build, train
from colorgan.train.module import NonFiniteLossError
from tests.conftest import HANG_GUARD_S, ROOT, train_overrides
from tests.messy import UNREADABLE, gradient, write_unreadable

TINY_UNET = ["model/generator=unet", "model.generator.ngf=8", "data.image_size=32"]
SHORT = ["trainer.limit_train_batches=3", "trainer.limit_val_batches=1", "trainer.num_sanity_val_steps=0"]


def photos(root: Path, *extra: str) -> list[str]:
    """photos_pretrain on ``root`` with a tiny U-Net: seconds per epoch on a CPU."""
    return train_overrides("photos_pretrain", f"data.root={root}", *TINY_UNET, *extra)


@pytest.fixture
def messy_photos(tmp_path: Path) -> Path:
    """train/, val/ and test/ each holding good photos and every broken kind of file (test_images has the rest)."""
    root = tmp_path / "photos"
    for split in ("train", "val", "test"):
        write_unreadable(root / split)
        good = ("good_a.jpg", "good_b.png") + (("good_c.png",) if split == "test" else ())
        for name in good:  # train/, val/: 8 files, every one starts a batch of 2 (drop_last drops none)
            Image.fromarray(gradient()).save(root / split / name)
    return root


def skip_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "skipping unreadable image" in r.getMessage()]


# ------------------------------------------------------------------------------------ messy folders
def test_messy_folder_trains_skipping_each_bad_file_once_and_counting_it(make_cfg, messy_photos, tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    summary = train(make_cfg(photos(messy_photos, "trainer.max_epochs=1"), output_dir=tmp_path / "run"))
    bad = sorted(str(messy_photos / split / name) for split in ("train", "val") for name in UNREADABLE)
    assert summary["skipped_images"] == {"count": len(bad), "files": bad}
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["skipped_images"]["count"] == len(bad)
    warnings = skip_warnings(caplog)
    for path in bad:
        assert sum(path + ":" in w for w in warnings) == 1, path  # logged once, with the reason
    assert torch.isfinite(torch.tensor(summary["metrics"]["val/l1_ab"]))


@pytest.mark.slow
def test_worker_processes_skip_files_logged_once_by_the_main_process(messy_photos, caplog):
    caplog.set_level(logging.WARNING)
    dm = FolderDataModule(str(messy_photos), image_size=32, batch_size=4, num_workers=2)
    dm.setup("fit")
    loader = dm.val_dataloader()
    for _ in range(2):  # two epochs through the same persistent workers
        for batch in loader:
            dm.on_before_batch_transfer(batch, 0)
    del loader, batch  # shuts the workers down
    gc.collect()
    # Told to stop, a worker exits at once on an idle machine; on a busy one torch may find it alive after
    # 5 s and SIGTERM it, which a worker defers by WORKER_SIGTERM_GRACE_S. Either way it ends: wait for
    # that (a leaked worker never would), rather than for how fast this machine is.
    for child in multiprocessing.active_children():
        child.join(timeout=WORKER_SIGTERM_GRACE_S + 120)  # its alarm is wall-clock time: load cannot delay it
    assert not multiprocessing.active_children()
    assert dm.summary_fields()["skipped_images"]["count"] == len(UNREADABLE)
    warnings = skip_warnings(caplog)
    assert len(warnings) == len(UNREADABLE)
    assert all(any(name in w for w in warnings) for name in UNREADABLE)


def evaluate_folder(make_cfg, root: Path, out: Path, data: str = "folder") -> dict:
    """evaluate.py on ``root`` (``data=folder``, or ``shards``) with a tiny untrained U-Net, no optional metrics."""
    gen_cfg = {"name": "unet", "image_size": 32, "ngf": 8, "norm": "batch", "dropout": 0.5, "depth": None}
    generator = build_generator(gen_cfg)
    ckpt = out.parent / "tiny.ckpt"
    state = {f"generator.{k}": v for k, v in generator.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"generator": gen_cfg}}, ckpt)
    overrides = [f"ckpt_path={ckpt}", "device=cpu", f"data={data}", f"data.root={root}", "data.image_size=32"]
    overrides += ["data.num_workers=0", "eval.fid=false", "eval.lpips=false", "eval.probe=false"]
    return evaluate(make_cfg(overrides, config_name="eval", output_dir=out))


def test_evaluate_on_messy_folder_scores_each_readable_image_once(make_cfg, messy_photos, tmp_path):
    report = evaluate_folder(make_cfg, messy_photos, tmp_path / "eval")
    n_files = len([p for p in (messy_photos / "test").iterdir() if p.is_file()])
    assert report["num_images"] == n_files - len(UNREADABLE)  # the test/ folder, not val/
    bad = sorted(str(messy_photos / "test" / name) for name in UNREADABLE)
    assert report["skipped_images"]["count"] == len(UNREADABLE) and report["skipped_images"]["files"] == bad


def test_evaluate_says_what_it_skipped_and_why_in_the_report_and_the_printout(make_cfg, messy_photos, tmp_path, capsys):
    evaluate_folder(make_cfg, messy_photos, tmp_path / "eval")
    said = f"{len(UNREADABLE)} unreadable image files of the test split were skipped (not scored)"
    printed = capsys.readouterr().out
    report = (tmp_path / "eval" / "report.md").read_text()
    assert said in printed and said in report
    for name, words in UNREADABLE.items():  # each file and why, where people look
        line = next(line for line in report.splitlines() if name in line)
        assert words in line, line
    assert "report.md" in printed.split(said)[1].splitlines()[0]  # the printout says where the reasons are


def test_all_unreadable_test_split_is_named_in_the_error(make_cfg, tmp_path):
    root = tmp_path / "photos"
    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
        for name in ("a.png", "b.png"):
            Image.fromarray(gradient()).save(root / split / name)
    write_unreadable(root / "test")
    with pytest.raises(DataNotFoundError) as info:
        evaluate_folder(make_cfg, root, tmp_path / "eval")
    assert f"in {root / 'test'} could be read" in str(info.value) and str(root / "val") not in str(info.value)


def test_folder_without_one_readable_image_stops_before_training(make_cfg, tmp_path):
    write_unreadable(tmp_path / "broken")
    with pytest.raises(DataNotFoundError, match=r"none of the \d+ image files .*broken.* could be read"):
        train(make_cfg(photos(tmp_path / "broken"), output_dir=tmp_path / "run"))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_on_bad_image_error_stops_at_the_first_bad_file(make_cfg, messy_photos, tmp_path):
    cfg = make_cfg(photos(messy_photos, "data.on_bad_image=error", "trainer.fast_dev_run=true"))
    with pytest.raises(BadImageError, match=r"data\.on_bad_image=error") as info:
        train(cfg)
    assert Path(info.value.path).name in UNREADABLE and Path(info.value.path).parent.parent == messy_photos


# ---------------------------------------------------------------------------------------- NaN / Inf
class PoisonBatches(Callback):
    """Sets ab to NaN in chosen batches (by their number in the run), as a corrupt input would."""

    def __init__(self, poisoned: set[int] | None = None, from_epoch: int | None = None) -> None:
        self.poisoned, self.from_epoch = poisoned or set(), from_epoch
        self.before: dict[str, torch.Tensor] | None = None
        self.unchanged: list[bool] = []

    def _hit(self, trainer) -> bool:
        return trainer.fit_loop.total_batch_idx in self.poisoned or (
            self.from_epoch is not None and trainer.current_epoch >= self.from_epoch
        )

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._hit(trainer):
            batch["ab"].fill_(float("nan"))
            self.before = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.before is not None:
            after = pl_module.state_dict()
            self.unchanged.append(all(torch.equal(v, after[k]) for k, v in self.before.items()))
            self.before = None


def test_nan_batches_skip_their_steps_and_too_many_in_a_row_stop_the_run(make_cfg, tmp_path, caplog):
    """Epoch 0: one NaN batch is skipped and training goes on. Epoch 1: every batch is NaN until the stop."""
    caplog.set_level(logging.WARNING)
    overrides = train_overrides("cifar_gan", "trainer.max_epochs=3", "model.max_bad_steps=3", *SHORT)
    datamodule, model, trainer = build(make_cfg(overrides, output_dir=tmp_path))
    poison = PoisonBatches({1}, from_epoch=1)
    trainer.callbacks.append(poison)
    with pytest.raises(NonFiniteLossError, match=r"3 optimizer steps in a row had a non-finite loss .* intact"):
        trainer.fit(model, datamodule=datamodule)
    # every skipped batch left D, G, their BatchNorm statistics and the optimizers exactly as they were
    assert len(poison.unchanged) >= 2 and all(poison.unchanged)
    messages = [r.getMessage() for r in caplog.records]
    assert any("non-finite discriminator loss (nan) at step 2: step skipped" in m for m in messages)
    assert any("non-finite generator loss (nan) at step 2: step skipped" in m for m in messages)
    # the checkpoint from the end of epoch 0 is intact: 2 good batches x (D + G) steps, finite
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert ckpt["epoch"] == 0 and ckpt["global_step"] == 4 == trainer.global_step
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
    for name, value in model.state_dict().items():  # nothing moved after it either
        assert torch.equal(value, ckpt["state_dict"][name]), name


def test_a_run_whose_every_step_was_skipped_does_not_end_as_a_success(make_cfg, tmp_path):
    """Fewer bad batches than max_bad_steps: the run would end normally with an untrained model."""
    poison = ["+callbacks.poison._target_=tests.test_faults.PoisonBatches", "+callbacks.poison.from_epoch=0"]
    overrides = train_overrides("cifar_pretrain", "trainer.max_epochs=1", *SHORT, *poison)
    with pytest.raises(NoStepTakenError, match=r"every optimizer step of this run was skipped \(3 batches"):
        train(make_cfg(overrides, output_dir=tmp_path))
    assert not (tmp_path / "summary.json").exists()  # no summary of a successful run


# ------------------------------------------------------------------------------- killed while saving
SAVE_THEN_DIE_MID_SAVE = """
import sys, time, torch
from pathlib import Path
from colorgan.checkpoint import AtomicCheckpointIO
io = AtomicCheckpointIO()
io.save_checkpoint({"i": 0, "weights": torch.full((2_000_000,), 0.0)}, sys.argv[1])
real_save = torch.save

def save_half_then_wait(obj, f, *args, **kwargs):  # the kill lands mid-write, at the same point on any machine
    real_save(obj, f, *args, **kwargs)
    data = Path(f).read_bytes()
    Path(f).write_bytes(data[: len(data) // 2])
    Path(sys.argv[2]).write_text("half-written")
    time.sleep(3600)

torch.save = save_half_then_wait
io.save_checkpoint({"i": 1, "weights": torch.full((2_000_000,), 1.0)}, sys.argv[1])
"""


@pytest.mark.slow
def test_kill_during_save_leaves_the_previous_checkpoint_loadable(tmp_path):
    path, flag = tmp_path / "last.ckpt", tmp_path / "half-written"
    proc = subprocess.Popen([sys.executable, "-c", SAVE_THEN_DIE_MID_SAVE, str(path), str(flag)], cwd=ROOT)
    tmp = tmp_path / f".last.ckpt.{proc.pid}.tmp.ckpt"
    try:
        deadline = time.monotonic() + HANG_GUARD_S  # the flag comes at a known point, however busy the machine
        while not flag.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the saving process stopped"
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    assert tmp.exists() and 0 < tmp.stat().st_size < path.stat().st_size  # the second save is half-written
    ckpt = load_checkpoint(path)
    assert ckpt["i"] == 0 and torch.equal(ckpt["weights"], torch.zeros(2_000_000))  # the first, whole
    AtomicCheckpointIO().save_checkpoint({"i": -1}, path)  # the next save removes what the killed one left
    assert not tmp.exists() and load_checkpoint(path) == {"i": -1}


# -------------------------------------------------------------------------------- SIGTERM, resume
class SigtermAtStep(Callback):
    """Stands for the scheduler: after optimizer step ``step``, SIGTERM to this run's whole process group.

    Sent from inside the run at a known batch, so where the run stops does not depend on how busy the
    machine is; the signal still reaches every process of the group (the loader worker too), as a
    scheduler's does.
    """

    def __init__(self, step: int) -> None:
        self.step, self.sent = step, False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.sent and trainer.global_step == self.step:
            self.sent = True
            os.killpg(os.getpgrp(), signal.SIGTERM)


@pytest.mark.slow
def test_sigterm_saves_last_checkpoint_exits_cleanly_and_the_run_resumes(make_cfg, data_dir, tmp_path):
    run = tmp_path / "run"
    base = train_overrides("photos_pretrain", *TINY_UNET, *SHORT)
    # 2 steps per epoch (the tiny photos less the test split carved out, batch 2): step 3 is mid-epoch 1
    sigterm = ["+callbacks.sigterm._target_=tests.test_faults.SigtermAtStep", "+callbacks.sigterm.step=3"]
    # one loader worker: the scheduler's SIGTERM reaches it too, and must not break the last batch
    cmd = [
        sys.executable,
        "train.py",
        *base,
        *sigterm,
        "data.num_workers=1",
        "trainer.max_epochs=3",  # a signal that never came ends the run, and the asserts say so
        f"paths.data_dir={data_dir}",
    ]
    env = {**os.environ, "COLORGAN_ROOT": str(ROOT), "PYTHONPATH": str(ROOT)}
    # its own process group, signalled as a whole, as a cluster scheduler does
    proc = subprocess.Popen(
        [*cmd, f"hydra.run.dir={run}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    last = run / "checkpoints" / "last.ckpt"
    try:
        output, _ = proc.communicate(timeout=HANG_GUARD_S)  # the signal comes at step 3, however busy the machine
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, output[-3000:]
    assert "SIGTERM: saved" in output
    saved = json.loads((run / "summary.json").read_text())["preempted"]
    assert saved["checkpoint"] == str(last)
    assert saved["epoch"] == 1 and load_checkpoint(last)["global_step"] == saved["global_step"] == 3  # its step

    # resume: the counters go on from the saved step
    resume = [*base, f"ckpt_path={last}", f"trainer.max_epochs={saved['epoch'] + 1}"]
    datamodule, model, trainer = build(make_cfg(resume, output_dir=tmp_path / "resumed"))
    steps: list[int] = []

    class RecordSteps(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            steps.append(trainer.global_step)

    trainer.callbacks.append(RecordSteps())
    trainer.fit(model, datamodule=datamodule, ckpt_path=str(last))
    assert steps and steps[0] == saved["global_step"]
    assert trainer.global_step > saved["global_step"] and trainer.current_epoch == saved["epoch"] + 1
