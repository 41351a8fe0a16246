"""Sweeps: train.py -m runs one folder per job, one W&B run per job grouped by the sweep, and ends
with a table and a plot of every job's overrides and final metrics, failed jobs listed as such."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from colorgan.runs.sweep import SweepSummary, collect_jobs, summarize_sweep, varied_keys
from tests.conftest import CONF, HANG_GUARD_S, ROOT, train_overrides
from tests.wandb_offline import read_offline_run


def fake_job(sweep: Path, num: int, overrides: list[str], summary: dict | None) -> None:
    folder = sweep / str(num)
    (folder / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(overrides), folder / ".hydra" / "overrides.yaml")
    OmegaConf.save(OmegaConf.create({"hydra": {"job": {"num": num}}}), folder / ".hydra" / "hydra.yaml")
    if summary is not None:
        (folder / "summary.json").write_text(json.dumps(summary))


def test_summary_tables_and_plot_from_job_folders(tmp_path):
    sweep = tmp_path / "sweep"
    metrics = {"val/l1_ab": 0.2, "val/psnr": 20.0, "val/psnr_gain": 0.5, "val/realism": 0.8, "train/g_l1": 0.3}
    for num, lam in enumerate((1, 10, 100)):
        summary = {"metrics": {**metrics, "val/psnr": 20.0 + num}, "epochs": 3, "wall_time_s": 1.5}
        fake_job(sweep, num, ["experiment=cifar_gan", f"model.lambda_l1={lam}"], summary)
    fake_job(sweep, 3, ["experiment=cifar_gan", "model.lambda_l1=1000"], {"status": "failed", "error": "Boom:\nline 2"})
    fake_job(sweep, 4, ["experiment=cifar_gan", "model.lambda_l1=5000"], None)  # killed: no summary.json

    jobs = summarize_sweep(sweep)
    assert [j.status for j in jobs] == ["completed", "completed", "completed", "failed", "missing"]
    assert varied_keys(jobs) == ["model.lambda_l1"]

    with (sweep / "sweep_summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["model.lambda_l1"] for r in rows] == ["1", "10", "100", "1000", "5000"]
    assert [float(r["val/psnr"]) for r in rows[:3]] == [20.0, 21.0, 22.0]
    assert rows[0]["experiment"] == "cifar_gan" and rows[0]["epochs"] == "3" and rows[0]["folder"] == "0"
    assert rows[3]["status"] == "failed" and rows[3]["error"] == "Boom:\nline 2" and rows[3]["val/psnr"] == ""

    md = (sweep / "sweep_summary.md").read_text()
    assert "3 of 5 jobs completed" in md and "`experiment=cifar_gan`" in md
    assert "| 2 | completed | 100 | 0.2 | 22 | 0.5 | 0.8 | 3 |" in md
    assert "* job 3 (failed): Boom: line 2" in md and "* job 4 (missing): no summary.json" in md
    with Image.open(sweep / "sweep_summary.png") as plot:
        assert plot.width > 600  # one panel per metric

    with pytest.raises(SystemExit, match="2 of 5 jobs did not complete"):
        SweepSummary().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}}))
    SweepSummary(fail_on_failed_jobs=False).on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}}))


@pytest.mark.slow
def test_multirun_writes_job_folders_wandb_runs_and_sweep_summary(data_dir, tmp_path):
    """Two jobs: lambda_l1=10 trains; 1e39 passes the config check (finite) but overflows float32 times
    the L1 loss, so every G loss is inf and that job fails mid-training (inf itself is refused up front)."""
    sweep = tmp_path / "sweep"
    overrides = [o for o in train_overrides("cifar_gan") if not o.startswith("logger=")]
    overrides += [
        "logger=wandb",
        f"paths.data_dir={data_dir}",
        f"hydra.sweep.dir={sweep}",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "trainer.num_sanity_val_steps=0",
        "model.max_bad_steps=2",
        "model.lambda_l1=10,1e39",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(COLORGAN_ROOT=str(ROOT), HOME=str(tmp_path), NETRC=str(tmp_path / "no-netrc"))
    proc = subprocess.run(
        [sys.executable, "train.py", "-m", *overrides],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output  # a job failed: the sweep says so in its exit code...
    assert "1 of 2 jobs did not complete" in output, output[-3000:]  # ...after summarizing every job

    jobs = collect_jobs(sweep)
    assert [j.folder.name for j in jobs] == ["0", "1"]
    assert [j.status for j in jobs] == ["completed", "failed"]
    assert "NonFiniteLossError" in jobs[1].error
    assert math.isfinite(jobs[0].metrics["val/l1_ab"]) and math.isfinite(jobs[0].metrics["val/psnr"])
    assert (jobs[0].folder / "checkpoints" / "last.ckpt").is_file()
    with (sweep / "sweep_summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["model.lambda_l1"], r["status"]) for r in rows] == [("10", "completed"), ("1e+39", "failed")]
    assert float(rows[0]["val/realism"]) == pytest.approx(jobs[0].metrics["val/realism"])
    assert "| 1 | failed | 1e+39 |" in (sweep / "sweep_summary.md").read_text()
    with Image.open(sweep / "sweep_summary.png") as plot:
        plot.verify()

    # one W&B run per job, grouped by the sweep, each finished (the failed one with exit code 1)
    runs = [read_offline_run(next((job.folder / "wandb").glob("offline-run-*")), wait_s=HANG_GUARD_S) for job in jobs]
    assert [r.name for r in runs] == ["0-model.lambda_l1=10", "1-model.lambda_l1=1e+39"]
    assert {r.group for r in runs} == {"cifar_gan-sweep"}
    assert [r.exit_code for r in runs] == [0, 1]
    assert runs[0].config["model"]["lambda_l1"] == 10 and len(runs[0].values("val/l1_ab")) == 1
    assert runs[0].values("val/l1_ab") == [pytest.approx(jobs[0].metrics["val/l1_ab"])]


def test_optuna_search_and_slurm_launcher_configs_instantiate():
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides
    from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf
    from optuna.distributions import CategoricalDistribution, LogUniformDistribution
    from optuna.samplers import TPESampler

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=["hparams_search=cifar_gan_optuna", "experiment=cifar_gan", "trainer=ddp"],
            return_hydra_config=True,
        )
        slurm = compose("train", overrides=["hydra/launcher=slurm", "trainer=ddp"], return_hydra_config=True)
    GlobalHydra.instance().clear()
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and "model.lambda_l1" in sweeper.params
    assert cfg.hydra.callbacks.sweep_summary.fail_on_failed_jobs is False
    search = instantiate(sweeper).sweeper  # the installed plugin accepts every setting
    assert isinstance(search.sampler, TPESampler) and (search.direction, search.n_trials) == ("minimize", 20)
    space, fixed = create_params_from_overrides([f"{k}={v}" for k, v in search.params.items()])  # as sweep() reads them
    assert not fixed and space["model.lambda_l1"] == LogUniformDistribution(1, 200)
    assert space["model.lr"] == LogUniformDistribution(5e-5, 1e-3)
    assert space["model.gan_mode"] == CategoricalDistribution(("vanilla", "lsgan", "hinge"))

    launcher = slurm.hydra.launcher
    assert launcher._target_ == SlurmQueueConf._target_ and launcher.partition is None  # the plugin's settings too
    assert launcher.tasks_per_node == launcher.gpus_per_node  # one SLURM task per GPU: SLURM starts the ranks
    assert slurm.trainer.devices == "auto" and slurm.trainer.strategy.find_unused_parameters is True
    slurm_launcher = instantiate(launcher)  # Hydra's plugin scan re-runs the module: a new class, compare by name
    assert type(slurm_launcher).__name__ == "SlurmLauncher" and slurm_launcher.params["tasks_per_node"] == 4
