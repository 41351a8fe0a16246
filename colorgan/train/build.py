"""Build everything from the Hydra config and fit: data -> module -> trainer.

Everything that can be checked before the first step is checked before anything is written: the
config, the folders the run writes to, and the checkpoint a resume starts from.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import hydra
from lightning.pytorch import Callback, LightningDataModule, Trainer, seed_everything
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from colorgan.checkpoint import AtomicCheckpointIO
from colorgan.errors import ColorganError
from colorgan.precision import resolve_precision
from colorgan.runs.folder import check_writable, mark_work_started
from colorgan.runs.resume import check_resume_checkpoint, resolve_resume_path
from colorgan.runtime import keep_freed_memory
from colorgan.train.config_checks import check_config
from colorgan.train.module import ColorizationModule

log = logging.getLogger(__name__)


class NoStepTakenError(ColorganError, RuntimeError):
    """Training ran batches but skipped every optimizer step: the weights are the untrained ones."""


def batches_completed(trainer: Trainer) -> int:
    """Training batches of the fit so far, resumes included, each counted once all its hooks have run."""
    return trainer.fit_loop.epoch_loop.batch_progress.total.completed


class _TrainingProgress(Callback):
    """Where this fit started (after any resume), and the moment work starts in the run folder."""

    def __init__(self) -> None:
        self.start_step = 0
        self.start_batches = 0

    def on_train_start(self, trainer: Trainer, pl_module: Any) -> None:
        mark_work_started()  # from here a failure keeps the folder: it may hold this run's checkpoints
        self.start_step = trainer.global_step
        self.start_batches = batches_completed(trainer)


def instantiate_group(cfg: DictConfig | None) -> list[Any]:
    """Instantiate every entry with a ``_target_`` in a callbacks/logger config group."""
    return [hydra.utils.instantiate(e) for e in (cfg or {}).values() if isinstance(e, DictConfig) and "_target_" in e]


def output_places(cfg: DictConfig) -> dict[str, Path]:
    """Every folder the run writes to, by the config key that sets it."""
    places = {"paths.output_dir": Path(cfg.paths.output_dir)}
    for group in ("callbacks", "logger"):
        for name, entry in (cfg.get(group) or {}).items():
            for key in ("dirpath", "save_dir"):
                if isinstance(entry, DictConfig) and entry.get(key):
                    places[f"{group}.{name}.{key}"] = Path(str(entry[key]))
    return places


def check_output_places(cfg: DictConfig) -> None:
    """Fail before the first epoch, naming the key, rather than at the first save after it."""
    for key, path in output_places(cfg).items():
        check_writable(path, key)


def checkpoint_dirs(cfg: DictConfig) -> list[Path]:
    """The folders the checkpoint callbacks write to: where ``ckpt_path=last`` looks."""
    dirs = dict.fromkeys(path for key, path in output_places(cfg).items() if key.endswith(".dirpath"))
    return list(dirs) or [Path(cfg.paths.output_dir) / "checkpoints"]


def build(cfg: DictConfig, resume_from: str | None = None) -> tuple[LightningDataModule, ColorizationModule, Trainer]:
    """Everything ``train`` needs, built from one config; tests use it to drive steps directly.

    ``resume_from`` is checked against the model before any logger or callback writes to the run folder.
    """
    check_config(cfg)
    check_output_places(cfg)
    if cfg.get("seed") is not None:
        seed_everything(cfg.seed, workers=True)
    datamodule: LightningDataModule = hydra.utils.instantiate(cfg.data)
    # G and D settings arrive as plain dicts, as checkpoints save them
    model: ColorizationModule = hydra.utils.instantiate(cfg.model, _convert_="all")
    if resume_from:
        check_resume_checkpoint(resume_from, model)
    callbacks: list[Callback] = instantiate_group(cfg.get("callbacks"))
    loggers: list[Logger] = instantiate_group(cfg.get("logger"))
    trainer: Trainer = hydra.utils.instantiate(
        cfg.trainer,
        precision=resolve_precision(
            cfg.trainer.get("precision", "32-true"),
            cfg.trainer.get("accelerator", "auto"),
            channels_last=cfg.model.get("channels_last"),  # auto compares precisions in the model's memory format
        ),
        callbacks=callbacks,
        logger=loggers or False,
        plugins=[AtomicCheckpointIO()],
    )
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    return datamodule, model, trainer


def _last_checkpoint(trainer: Trainer) -> str | None:
    """last.ckpt may come from another checkpoint callback than the monitored one (LastCheckpoint)."""
    return next((cb.last_model_path for cb in trainer.checkpoint_callbacks if getattr(cb, "last_model_path", "")), None)


def _write_summary(trainer: Trainer, output_dir: Path, seconds: float) -> dict[str, Any]:
    speed = next((cb for cb in trainer.callbacks if hasattr(cb, "last_images_per_sec")), None)
    summary = {
        "metrics": {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1},
        "epochs": trainer.current_epoch,
        "wall_time_s": round(seconds, 1),
        "train_images_per_sec": getattr(speed, "last_images_per_sec", None),
        "last_train_epoch_s": getattr(speed, "last_epoch_seconds", None),
        "best_checkpoint": getattr(trainer.checkpoint_callback, "best_model_path", None) or None,
        "last_checkpoint": _last_checkpoint(trainer),
    }
    for source in (trainer.datamodule, *trainer.callbacks):  # e.g. skipped images, pre-emption
        fields = getattr(source, "summary_fields", None)
        if callable(fields):
            summary.update(fields())
    if trainer.is_global_zero:
        text = json.dumps(summary, indent=2)
        (output_dir / "summary.json").write_text(text)
        log.info("run summary: %s", text)
    return summary


def check_steps_taken(trainer: Trainer, progress: _TrainingProgress) -> None:
    """A fit that ran batches but never stepped must not end as a success with an untrained checkpoint."""
    batches = batches_completed(trainer) - progress.start_batches
    if batches > 0 and trainer.global_step == progress.start_step:
        last = _last_checkpoint(trainer)
        saved = f"; {last} holds the weights it started with" if last else ""
        raise NoStepTakenError(
            f"every optimizer step of this run was skipped ({batches} batches, each with a non-finite loss: see "
            f"the warnings above), so nothing was trained{saved}. Check model.lambda_l1 and model.lambda_gan, try "
            "a lower model.lr, model.gradient_clip_val=1.0 or trainer.precision=32-true, and check the data"
        )


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit the model described by ``cfg`` and return the run summary (metrics, checkpoints, speed)."""
    keep_freed_memory()
    check_config(cfg)  # config mistakes first, then where to resume from
    runs_dir = Path(cfg.paths.log_dir) / str(cfg.get("task_name", "train")) / "runs"
    resume_from = resolve_resume_path(cfg.get("ckpt_path"), checkpoint_dirs(cfg), Path(cfg.paths.output_dir), runs_dir)
    datamodule, model, trainer = build(cfg, resume_from)
    progress = _TrainingProgress()
    trainer.callbacks.append(progress)
    start = time.perf_counter()
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from)
    except SIGTERMException:  # pre-empted: last.ckpt is saved; record it, then exit with code 0
        _write_summary(trainer, Path(cfg.paths.output_dir), time.perf_counter() - start)
        raise
    check_steps_taken(trainer, progress)
    return _write_summary(trainer, Path(cfg.paths.output_dir), time.perf_counter() - start)
