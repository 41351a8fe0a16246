"""Surviving pre-emption: on SIGTERM, save ``last.ckpt`` and end the run cleanly.

Clusters send SIGTERM some seconds before killing a job. Lightning (2.x) already notes the
signal on every platform but Windows and, once the current batch has finished, raises
``SIGTERMException`` (a ``SystemExit`` with code 0) out of ``trainer.fit``; what it does not do
outside SLURM's auto-requeue is save. This callback saves at that moment, where a resumed run
(``ckpt_path=.../last.ckpt``) picks up from the same step.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


def _last_keeper(trainer: Trainer) -> ModelCheckpoint | None:
    """The checkpoint callback that writes ``last.ckpt`` (``save_last``), else the first one."""
    callbacks = [cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint)]
    return next((cb for cb in callbacks if cb.save_last), callbacks[0] if callbacks else None)


def last_checkpoint_path(trainer: Trainer) -> Path:
    """The ``last.ckpt`` the checkpoint callbacks keep, so a resume finds one file either way."""
    callback = _last_keeper(trainer)
    if callback is not None and callback.dirpath:
        return Path(callback.dirpath) / f"{callback.CHECKPOINT_NAME_LAST}{callback.FILE_EXTENSION}"
    return Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"


class CheckpointOnSigterm(Callback):
    """Save ``last.ckpt`` when the run ends because of SIGTERM; the process then exits with 0.

    Also saves when SIGTERM was received but another error ended the run first (e.g. a loader
    worker killed by the same signal), since the loop was between batches either way.
    """

    def __init__(self) -> None:
        self.saved: dict[str, Any] | None = None

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if not (isinstance(exception, SIGTERMException) or trainer.received_sigterm) or trainer.sanity_checking:
            return
        path = last_checkpoint_path(trainer)
        trainer.save_checkpoint(path)  # through the trainer's CheckpointIO: atomic
        callback = _last_keeper(trainer)
        if callback is not None:
            callback.last_model_path = str(path)  # the summary's last_checkpoint
        self.saved = {"checkpoint": str(path), "epoch": trainer.current_epoch, "global_step": trainer.global_step}
        log.warning(
            "SIGTERM: saved %s at epoch %d, step %d; resume with ckpt_path=%s",
            path,
            trainer.current_epoch,
            trainer.global_step,
            path,
        )

    def summary_fields(self) -> dict[str, Any]:
        """Added to summary.json: whether (and where) the run was pre-empted."""
        return {"preempted": self.saved}
