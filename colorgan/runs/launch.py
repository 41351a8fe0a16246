"""Running one job of train.py or evaluate.py: refuse a launch that cannot work, always finish W&B,
record a failed multirun job."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.environments import LSFEnvironment, SLURMEnvironment, TorchElasticEnvironment
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from colorgan.runs.failures import exit_with_message, show_traceback, user_error
from colorgan.runs.folder import settle_failed_attempt
from colorgan.runs.loggers import finish_wandb, hydra_job
from colorgan.train.config_checks import ConfigError

log = logging.getLogger(__name__)

_SUBPROCESS_DDP = {"ddp", "ddp_find_unused_parameters_true", "ddp_find_unused_parameters_false"}


def _process_count(trainer: DictConfig) -> int:
    """Processes the trainer config asks for: devices per node (``auto`` = every GPU) times nodes."""
    nodes = int(trainer.get("num_nodes", 1) or 1)
    devices = trainer.get("devices", 1)
    if isinstance(devices, str):
        text = devices.strip()
        if "," in text:
            return len([d for d in text.split(",") if d.strip()]) * nodes
        devices = int(text) if text.lstrip("-").isdigit() else text
    if isinstance(devices, int) and devices >= 0:
        return max(devices, 1) * nodes
    if devices in ("auto", -1):
        if str(trainer.get("accelerator", "auto")) == "cpu":
            return nodes
        return max(1, torch.cuda.device_count()) * nodes
    return len(devices) * nodes  # a list of device indices


def _ranks_started_externally() -> bool:
    """SLURM (srun), torchrun or another launcher already started one process per rank."""
    return any(env.detect() for env in (SLURMEnvironment, TorchElasticEnvironment, LSFEnvironment))


def check_launch(cfg: DictConfig) -> None:
    """Refuse DDP that starts its ranks by re-running the script inside a Hydra multirun.

    Lightning's subprocess launcher re-runs ``sys.argv``; within ``-m`` every rank would start the
    whole sweep again, so Lightning dropped that combination. Spawned ranks, or ranks started by
    SLURM (``hydra/launcher=submitit_slurm``) or torchrun, are fine.
    """
    if not hydra_job()["multirun"] or _ranks_started_externally():
        return
    trainer = cfg.get("trainer") or DictConfig({})
    strategy = trainer.get("strategy")
    if isinstance(strategy, str):
        subprocess_ddp = strategy in _SUBPROCESS_DDP
    elif isinstance(strategy, DictConfig) and str(strategy.get("_target_", "")).endswith("DDPStrategy"):
        subprocess_ddp = strategy.get("start_method", "popen") == "popen"
    else:
        subprocess_ddp = False
    if subprocess_ddp and _process_count(trainer) > 1:
        raise ConfigError(
            "trainer.strategy: DDP that re-runs train.py for each rank cannot run inside a Hydra multirun (each "
            "rank would start the sweep again). On one machine add trainer.strategy.start_method=spawn; on a "
            "cluster use hydra/launcher=submitit_slurm, where SLURM starts one task per GPU; or run the jobs "
            "one at a time without -m."
        )


def _run_finishing_wandb(task: Callable[[DictConfig], dict[str, Any]], cfg: DictConfig) -> dict[str, Any]:
    """Run ``task``; finish W&B whatever happens, with the exit code the job ends with.

    Else Lightning's WandbLogger reuses the open run, and every job of a multirun logs into the first one.
    """
    exit_code = 1
    try:
        check_launch(cfg)
        result = task(cfg)
        exit_code = 0
        return result
    except SystemExit as err:  # e.g. pre-emption: Lightning ends the run with SystemExit(0) after saving
        exit_code = err.code if isinstance(err.code, int) else 1
        raise
    finally:
        finish_wandb(exit_code=exit_code)


def run_task(task: Callable[[DictConfig], dict[str, Any]], cfg: DictConfig) -> dict[str, Any]:
    """Run one job (``train``, ``evaluate``); finish W&B whatever happens.

    In a single run a failure that came before the work started leaves the run folder as it was
    (``colorgan.runs.folder``), and a known mistake (a config value, a path, a checkpoint) ends the
    process with its message and exit code 1 instead of a traceback (``debug=true`` shows it). In a
    multirun the error is logged with its traceback and written to the job's summary.json, and the
    job returns that summary: the remaining jobs run, the sweep summary lists this one as failed,
    and the sweep exits non-zero at the end.
    """
    try:
        return _run_finishing_wandb(task, cfg)
    except Exception as err:
        if hydra_job()["multirun"]:
            log.exception("job failed; the sweep goes on with the next job")
            summary = {"status": "failed", "error": f"{type(err).__name__}: {err}".strip()[:2000], "metrics": {}}
            out = cfg.get("paths", {}).get("output_dir")
            if out and rank_zero_only.rank == 0:
                Path(out).mkdir(parents=True, exist_ok=True)
                (Path(out) / "summary.json").write_text(json.dumps(summary, indent=2))
            return summary
        note = settle_failed_attempt()
        shown = user_error(err)
        if shown is None or show_traceback(cfg):
            if note:
                log.error(note)
            raise
        exit_with_message(shown, note)
