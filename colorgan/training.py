"""Build everything from the Hydra config and fit: data -> module -> trainer."""

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

from colorgan.checkpoint import AtomicCheckpointIO, check_resume_checkpoint
from colorgan.config_checks import check_config
from colorgan.memory import keep_freed_memory
from colorgan.module import ColorizationModule
from colorgan.precision import resolve_precision

log = logging.getLogger(__name__)


def instantiate_group(cfg: DictConfig | None) -> list[Any]:
    """Instantiate every entry with a ``_target_`` in a callbacks/logger config group."""
    if not cfg:
        return []
    return [
        hydra.utils.instantiate(entry)
        for entry in cfg.values()
        if isinstance(entry, DictConfig) and "_target_" in entry
    ]


def build_module(cfg: DictConfig) -> ColorizationModule:
    return ColorizationModule(**OmegaConf.to_container(cfg.model, resolve=True))


def build(cfg: DictConfig) -> tuple[LightningDataModule, ColorizationModule, Trainer]:
    """Everything ``train`` needs, built from one config; tests use it to drive steps directly."""
    check_config(cfg)
    if cfg.get("seed") is not None:
        seed_everything(cfg.seed, workers=True)
    datamodule: LightningDataModule = hydra.utils.instantiate(cfg.data)
    model = build_module(cfg)
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


def _write_summary(trainer: Trainer, output_dir: Path, seconds: float) -> dict[str, Any]:
    checkpoint = trainer.checkpoint_callback
    # last.ckpt may come from another checkpoint callback than the monitored one (LastCheckpoint)
    last = next((cb.last_model_path for cb in trainer.checkpoint_callbacks if getattr(cb, "last_model_path", "")), None)
    speed = next((cb for cb in trainer.callbacks if hasattr(cb, "last_images_per_sec")), None)
    summary = {
        "metrics": {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1},
        "epochs": trainer.current_epoch,
        "wall_time_s": round(seconds, 1),
        "train_images_per_sec": getattr(speed, "last_images_per_sec", None),
        "last_train_epoch_s": getattr(speed, "last_epoch_seconds", None),
        "best_checkpoint": getattr(checkpoint, "best_model_path", None) or None,
        "last_checkpoint": last,
    }
    for source in (trainer.datamodule, *trainer.callbacks):  # e.g. skipped images, pre-emption
        fields = getattr(source, "summary_fields", None)
        if callable(fields):
            summary.update(fields())
    if trainer.is_global_zero:
        path = output_dir / "summary.json"
        path.write_text(json.dumps(summary, indent=2))
        log.info("run summary: %s", json.dumps(summary, indent=2))
    return summary


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit the model described by ``cfg`` and return the run summary (metrics, checkpoints, speed)."""
    keep_freed_memory()
    datamodule, model, trainer = build(cfg)
    if cfg.get("ckpt_path"):
        check_resume_checkpoint(cfg.ckpt_path, model)  # before any data is read or a step is taken
    start = time.perf_counter()
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    except SIGTERMException:  # pre-empted: last.ckpt is saved; record it, then exit with code 0
        _write_summary(trainer, Path(cfg.paths.output_dir), time.perf_counter() - start)
        raise
    return _write_summary(trainer, Path(cfg.paths.output_dir), time.perf_counter() - start)
