"""Experiment tracking and running jobs: W&B without an account, one W&B run per Hydra job, CSV metrics
that survive a resume, failures recorded.

* ``wandb_logger`` (``logger=wandb``) picks W&B's mode from the config: ``auto`` is online when an
  API key is configured and offline otherwise, so a run never stops for lack of an account. The
  mode goes to ``wandb.init``; nothing is written to ``os.environ`` (Lightning's ``offline=True``
  sets ``WANDB_MODE`` for the whole process, which would leak into the next job of a multirun).
* ``ResumableCSVLogger`` (``logger=csv``) appends to the run folder's ``csv/metrics.csv`` when a run
  resumes there; Lightning's own deletes it.
* ``run_task`` wraps a job: W&B is always finished (else Lightning's WandbLogger reuses the open
  run, and every job of a multirun logs into the first one), and in a multirun a failing job is
  logged and recorded in its ``summary.json`` so the other jobs and the sweep summary still run.
  In a single run a known mistake ends with its message, not a traceback (``colorgan.failures``).
"""

from __future__ import annotations

import csv
import json
import logging
import netrc
import os
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from omegaconf import DictConfig, OmegaConf

from colorgan.config_checks import ConfigError
from colorgan.failures import exit_with_message, show_traceback, user_error
from colorgan.run_folder import settle_failed_attempt

log = logging.getLogger(__name__)

WANDB_MODES = ("online", "offline", "disabled", "shared")
_MODE_ALIASES = {"dryrun": "offline", "run": "online"}  # older spellings W&B still accepts


# --------------------------------------------------------------------------- CSV
class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer, except that an existing metrics.csv is continued, never deleted."""

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


# --------------------------------------------------------------------------- W&B
def wandb_api_key_configured(base_url: str | None = None) -> bool:
    """Whether W&B would find credentials without prompting: ``WANDB_API_KEY``, an identity
    token file, or a netrc entry for the W&B host (what ``wandb login`` writes)."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlsplit(base_url or os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname
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
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return {"multirun": False}
    hc = HydraConfig.get()
    job = hc.get("job") or {}
    multirun = hc.get("mode") == RunMode.MULTIRUN
    sweep_dir = (hc.get("sweep") or {}).get("dir") if multirun else None
    own = list((hc.get("overrides") or {}).get("task") or [])
    return {
        "multirun": multirun,
        "num": job.get("num"),
        "overrides": ",".join(_swept(own, sweep_dir)) if sweep_dir else job.get("override_dirname") or "",
        "run_dir": (hc.get("runtime") or {}).get("output_dir"),
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
    from lightning.pytorch.loggers import WandbLogger

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


@dataclass
class OfflineRun:
    """What an offline W&B run recorded, read back from its ``run-*.wandb`` file."""

    path: Path
    name: str = ""
    group: str = ""
    job_type: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None  # None: the run was never finished

    def values(self, key: str) -> list[Any]:
        """Every logged value of ``key``, in order."""
        return [row[key] for row in self.history if key in row]


def _wandb_records(path: Path) -> Any:
    """The protobuf records of a W&B transaction log: a 7-byte header, then LevelDB-log blocks
    (32 KiB; each chunk: crc32, length, type FULL/FIRST/MIDDLE/LAST)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run file")
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer: padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:
            break
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def _item_key(item: Any) -> str:
    return "/".join(item.nested_key) if item.nested_key else item.key


def read_offline_run(run_dir: str | Path, wait_s: float = 0.0) -> OfflineRun:
    """Read an offline run folder (``.../wandb/offline-run-*``) without uploading it.

    W&B's service writes the file in the background; ``wait_s`` waits that long at most for the
    exit record that ``wandb.finish()`` leaves at the end.
    """
    deadline = time.monotonic() + wait_s
    while True:
        run = _read_offline_run(run_dir)
        if run.exit_code is not None or time.monotonic() >= deadline:
            return run
        time.sleep(0.2)


def _read_offline_run(run_dir: str | Path) -> OfflineRun:
    path = next(Path(run_dir).glob("run-*.wandb"))
    run = OfflineRun(path=path)
    for record in _wandb_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.name, run.group, run.job_type = record.run.display_name, record.run.run_group, record.run.job_type
            updates = record.run.config.update
        elif kind == "config":
            updates = record.config.update
        elif kind == "history":
            run.history.append({_item_key(i): json.loads(i.value_json) for i in record.history.item})
            continue
        elif kind == "summary":
            run.summary.update({_item_key(i): json.loads(i.value_json) for i in record.summary.update})
            continue
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
            continue
        else:
            continue
        run.config.update({_item_key(i): json.loads(i.value_json) for i in updates})
    return run


# --------------------------------------------------------------------- launching
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
        import torch

        return max(1, torch.cuda.device_count()) * nodes
    return len(devices) * nodes  # a list of device indices


def _ranks_started_externally() -> bool:
    """SLURM (srun), torchrun or another launcher already started one process per rank."""
    from lightning.fabric.plugins.environments import LSFEnvironment, SLURMEnvironment, TorchElasticEnvironment

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


# -------------------------------------------------------------------- the wrapper
def _is_rank_zero() -> bool:
    from lightning.pytorch.utilities import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def failure_summary(err: BaseException) -> dict[str, Any]:
    """What a failed job leaves in its summary.json for the sweep summary."""
    return {"status": "failed", "error": f"{type(err).__name__}: {err}".strip()[:2000], "metrics": {}}


def _run_finishing_wandb(task: Callable[[DictConfig], dict[str, Any]], cfg: DictConfig) -> dict[str, Any]:
    """Run ``task``; finish W&B whatever happens, with the exit code the job ends with."""
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


def _record_failed_job(cfg: DictConfig, err: Exception) -> dict[str, Any]:
    """A failed job of a multirun: logged with its traceback and written to its summary.json."""
    log.exception("job failed; the sweep goes on with the next job")
    summary = failure_summary(err)
    out = cfg.get("paths", {}).get("output_dir")
    if out and _is_rank_zero():
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def run_task(task: Callable[[DictConfig], dict[str, Any]], cfg: DictConfig) -> dict[str, Any]:
    """Run one job (``train``, ``evaluate``); finish W&B whatever happens.

    In a single run a failure that came before the work started leaves the run folder as it was
    (``colorgan.run_folder``), and a known mistake (a config value, a path, a checkpoint) ends the
    process with its message and exit code 1 instead of a traceback (``debug=true`` shows it). In a
    multirun the error is logged with its traceback and written to the job's summary.json, and the
    job returns that summary: the remaining jobs run, the sweep summary lists this one as failed,
    and the sweep exits non-zero at the end.
    """
    try:
        return _run_finishing_wandb(task, cfg)
    except Exception as err:
        if hydra_job()["multirun"]:
            return _record_failed_job(cfg, err)
        note = settle_failed_attempt()
        shown = user_error(err)
        if shown is None or show_traceback(cfg):
            if note:
                log.error(note)
            raise
        exit_with_message(shown, note)
