"""Callbacks that show what users ask first (how fast is it training? what do the colours look like?)
and keep last.ckpt current."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info

from colorgan.evaluate.sample_grid import make_grid
from colorgan.files import save_image_atomic

log = logging.getLogger(__name__)


class TrainingSpeed(Callback):
    """Logs training images per second for each epoch (validation time excluded).

    ``images / seconds`` counts only the time inside training steps; ``last_epoch_seconds`` is the
    whole epoch as the user waits for it, so the two together show the framework's overhead.
    """

    def __init__(self) -> None:
        self.images = 0
        self.seconds = 0.0
        self._start = 0.0
        self.last_images_per_sec: float | None = None
        self.last_epoch_seconds: float | None = None
        self._epoch_start = 0.0

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.images, self.seconds = 0, 0.0
        self._epoch_start = time.perf_counter()

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.seconds += time.perf_counter() - self._start
        self.images += len(batch["rgb"]) * trainer.world_size

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.last_epoch_seconds = time.perf_counter() - self._epoch_start  # loader and hooks included
        if self.seconds > 0:
            self.last_images_per_sec = self.images / self.seconds
            pl_module.log("train/images_per_sec", self.last_images_per_sec)


class SampleGrid(Callback):
    """Every validation epoch, the first validation images as the module scored them: gray | colorized | truth.

    The grid goes to ``<run folder>/samples/epoch_NNN.png`` and, as ``val/samples``, to every logger
    that takes images (W&B's ``log_image``, TensorBoard's ``add_image``).
    """

    COLUMNS = ("gray", "colorized", "truth")

    def __init__(self) -> None:
        self.images: dict[str, torch.Tensor] | None = None

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if batch_idx == 0 and outputs:
            self.images = {name: outputs[name].cpu() for name in self.COLUMNS}

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.images is None or trainer.sanity_checking or not trainer.is_global_zero:
            return
        grid = make_grid([(name, self.images[name].float() / 255.0) for name in self.COLUMNS])
        # The x axis of the epoch's metrics: training batches as the loggers count them (global_step counts
        # optimizer steps, two per batch in the GAN stage); Lightning's LearningRateMonitor reads it too.
        epoch, step = trainer.current_epoch, trainer.fit_loop.epoch_loop._batches_that_stepped
        path = save_image_atomic(grid, Path(trainer.default_root_dir) / "samples" / f"epoch_{epoch:03d}.png")
        for logger in trainer.loggers:
            if callable(getattr(logger, "log_image", None)):
                caption = f"epoch {epoch}: {' | '.join(self.COLUMNS)}"
                logger.log_image(key="val/samples", images=[grid], caption=[caption], step=step)
            elif hasattr(getattr(logger, "experiment", None), "add_image"):
                chw = torch.from_numpy(np.asarray(grid)).permute(2, 0, 1)
                logger.experiment.add_image("val/samples", chw, step)
        log.info("samples written to %s", path)


class LastCheckpoint(ModelCheckpoint):
    """Keeps ``last.ckpt`` current: after every training epoch and every ``every_n_batches`` batches.

    ModelCheckpoint's own options fall short for the D/G loop: ``every_n_train_steps`` counts
    optimizer steps (two per batch in the GAN stage), and ``save_last`` on a monitored checkpoint
    refreshes ``last.ckpt`` only in epochs where the metric improved, so a resume could go back
    several epochs. This callback counts batches and saves whatever the metrics do; the
    monitored ModelCheckpoint keeps the best one.
    """

    def __init__(self, dirpath: str | None = None, every_n_batches: int | None = None) -> None:
        super().__init__(dirpath=dirpath, save_last=True, save_top_k=0, enable_version_counter=False)
        if every_n_batches is not None and every_n_batches < 1:
            raise ValueError(f"every_n_batches must be >= 1 or null, got {every_n_batches}")
        self.every_n_batches = every_n_batches

    @property
    def state_key(self) -> str:
        return self._generate_state_key()  # stable, so a resume with another interval restores it

    @staticmethod
    def _skip(trainer: Trainer) -> bool:
        return bool(trainer.fast_dev_run) or trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self.every_n_batches or self._skip(trainer):
            return
        # batches of the fit so far, resumes and this one included
        if trainer.fit_loop.epoch_loop.batch_progress.total.processed % self.every_n_batches == 0:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Runs after the module's own hook, so the schedulers have stepped for this epoch.
        if not self._skip(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Nothing: the epoch-end save above covers validation at the end of an epoch."""


class GuardedModelCheckpoint(ModelCheckpoint):
    """ModelCheckpoint that considers an epoch only while a guard metric stays at or above a floor.

    The GAN stage is ranked by realism (``val/realism``), and realism alone would crown vivid but
    wrong colours; with ``guard="val/psnr_gain", guard_min=0`` an epoch can be the best only if its
    PSNR is at least the gray baseline's on the same validation images. With ``guard=None`` it is
    a plain ModelCheckpoint.
    """

    def __init__(self, *args: Any, guard: str | None = None, guard_min: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.guard, self.guard_min = guard, guard_min
        self.guard_rejections = 0

    def _save_topk_checkpoint(self, trainer: Trainer, monitor_candidates: dict[str, Any]) -> None:
        if self.guard and self.guard in monitor_candidates:
            value = float(monitor_candidates[self.guard])
            if not value >= self.guard_min:  # NaN fails too
                self.guard_rejections += 1
                rank_zero_info(
                    f"epoch {trainer.current_epoch}: {self.guard}={value:.3f} < {self.guard_min}, so it cannot be "
                    f"the best checkpoint by {self.monitor}"
                )
                return
        super()._save_topk_checkpoint(trainer, monitor_candidates)
