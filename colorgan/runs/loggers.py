"""The loggers a run chooses with ``logger=``: W&B that needs no account, and CSV metrics that survive a resume.

* ``wandb_logger`` (``logger=wandb``) picks W&B's mode from the config: ``auto`` is online when an
  API key is configured and offline otherwise, so a run never stops for lack of an account. The
  mode goes to ``wandb.init``; nothing is written to ``os.environ`` (Lightning's ``offline=True``
  sets ``WANDB_MODE`` for the whole process, which would leak into the next job of a multirun).
  Its ``auto`` names give one W&B run per Hydra job, grouped by the sweep.
"""

from __future__ import annotations

import csv
import logging
import netrc
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from omegaconf import OmegaConf

from colorgan.train.config_checks import ConfigError

log = logging.getLogger(__name__)

WANDB_MODES = ("online", "offline", "disabled", "shared")
_MODE_ALIASES = {"dryrun": "offline", "run": "online"}  # older spellings W&B still accepts


def wandb_api_key_configured() -> bool:
    """Whether W&B would find credentials without prompting: ``WANDB_API_KEY``, an identity
    token file, or a netrc entry for the W&B host (what ``wandb login`` writes)."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlsplit(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname
    if not host:
        return False
    default = Path.home() / ("_netrc" if os.name == "nt" else ".netrc")
    try:
        return netrc.netrc(os.environ.get("NETRC") or default).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_wandb_mode(mode: str | None) -> str:
    """``auto`` | ``online`` | ``offline`` | ``disabled`` -> the mode for ``wandb.init``.

    Online without credentials would prompt or fail, so it falls back to offline with a warning;
    ``wandb sync <run dir>/wandb/offline-run-*`` uploads such a run later.
    """
    requested = str(mode or "auto").strip().lower()
    requested = _MODE_ALIASES.get(requested, requested)
    if requested not in (*WANDB_MODES, "auto"):
        raise ConfigError(f"logger.wandb.mode={mode!r} is invalid: use auto, online, offline or disabled")
    if requested in ("auto", "online", "shared") and not wandb_api_key_configured():
        if requested != "auto":
            log.warning("W&B mode %r needs an API key (WANDB_API_KEY or `wandb login`); logging offline", requested)
        return "offline"
    return "online" if requested == "auto" else requested


def hydra_job() -> dict[str, Any]:
    """What the W&B names come from: multirun or not, job number, overrides, run and sweep folders."""
    if not HydraConfig.initialized():
        return {"multirun": False}
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    sweep_dir = hc.sweep.get("dir") if multirun else None
    own = list(hc.overrides.task)
    return {
        "multirun": multirun,
        "num": hc.job.get("num"),
        "overrides": ",".join(_swept(own, sweep_dir)) if sweep_dir else hc.job.get("override_dirname") or "",
        "run_dir": hc.runtime.get("output_dir"),
        "sweep_dir": sweep_dir,
    }


def _swept(job_overrides: list[str], sweep_dir: str) -> list[str]:
    """This job's overrides that the sweep chose (``model.lambda_l1=10`` of ``model.lambda_l1=1,10,100``).

    The sweep's own command-line overrides are in ``multirun.yaml``; whatever this job has beyond
    them was swept. Without that file, all of the job's overrides.
    """
    try:
        common = set(OmegaConf.load(Path(sweep_dir) / "multirun.yaml").hydra.overrides.task)
    except Exception:  # missing or unreadable: fall back to every override
        return job_overrides
    return [o for o in job_overrides if o not in common] or job_overrides


def wandb_run_names(task_name: str | None, name: str | None, group: str | None) -> tuple[str | None, str | None]:
    """``auto`` names: in a multirun, group = the sweep, name = job number + overrides; else the run folder."""
    job = hydra_job()
    prefix = task_name or "run"
    if name == "auto":
        if job["multirun"]:
            name = f"{job['num']}-{job['overrides']}" if job["overrides"] else str(job["num"])
        else:
            name = f"{prefix}-{Path(job['run_dir']).name}" if job.get("run_dir") else None
    if name and len(name) > 128:  # long override lists would swamp the W&B run table
        name = name[:125] + "..."
    if group == "auto":
        group = f"{prefix}-{Path(job['sweep_dir']).name}" if job["multirun"] and job.get("sweep_dir") else None
    return name, group


def wandb_logger(
    mode: str | None = "auto",
    name: str | None = "auto",
    group: str | None = "auto",
    save_dir: str = ".",
    job_type: str | None = None,
    tags: Any = None,
    log_model: bool | str = False,
    **kwargs: Any,
) -> Any:
    """Lightning's WandbLogger with the mode and names resolved as described in the module docstring."""
    mode = resolve_wandb_mode(mode)
    name, group = wandb_run_names(job_type, name, group)
    if mode != "online" and log_model:
        log.warning("logger.wandb.log_model needs online mode; checkpoints are not uploaded")
        log_model = False
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    log.info("W&B: mode %s, run %r, group %r, files under %s/wandb", mode, name, group, save_dir)
    return WandbLogger(
        name=name,
        save_dir=save_dir,
        log_model=log_model,
        mode=mode,
        group=group,
        job_type=job_type,
        tags=[str(t) for t in tags] if tags else None,
        **kwargs,
    )


def finish_wandb(exit_code: int = 0) -> None:
    """Close the current W&B run, if any (without importing wandb when it was never used)."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish(exit_code=exit_code)


class _AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        """Lightning deletes metrics.csv here; instead go on with its columns (new ones rewrite the header)."""
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self.metrics_keys = next(csv.reader(file), [])


class ResumableCSVLogger(CSVLogger):
    """``logger=csv``: a run resumed into its folder appends to ``csv/metrics.csv``, earlier epochs kept.

    After a kill the steps between the checkpoint and the kill appear twice; the later rows are the
    resumed run's.
    """

    @property
    @rank_zero_experiment
    def experiment(self) -> _AppendingWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment
