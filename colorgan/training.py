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
from omegaconf import DictConfig, OmegaConf

from colorgan.checkpoint import AtomicCheckpointIO
from colorgan.config_checks import check_config
from colorgan.module import ColorizationModule

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
        cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=[AtomicCheckpointIO()]
    )
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    return datamodule, model, trainer


def _write_summary(trainer: Trainer, output_dir: Path, seconds: float) -> dict[str, Any]:
    checkpoint = trainer.checkpoint_callback
    speed = next((cb for cb in trainer.callbacks if hasattr(cb, "last_images_per_sec")), None)
    summary = {
        "metrics": {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1},
        "epochs": trainer.current_epoch,
        "wall_time_s": round(seconds, 1),
        "train_images_per_sec": getattr(speed, "last_images_per_sec", None),
        "best_checkpoint": getattr(checkpoint, "best_model_path", None) or None,
        "last_checkpoint": getattr(checkpoint, "last_model_path", None) or None,
    }
    if trainer.is_global_zero:
        path = output_dir / "summary.json"
        path.write_text(json.dumps(summary, indent=2))
        log.info("run summary: %s", json.dumps(summary, indent=2))
    return summary


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit the model described by ``cfg`` and return the run summary (metrics, checkpoints, speed)."""
    datamodule, model, trainer = build(cfg)
    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    return _write_summary(trainer, Path(cfg.paths.output_dir), time.perf_counter() - start)
