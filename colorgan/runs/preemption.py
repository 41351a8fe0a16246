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


class CheckpointOnSigterm(Callback):
    """Save ``last.ckpt`` on SIGTERM, also when another error ended the run first (e.g. a loader worker
    killed by the same signal): the loop was between batches either way."""

    def __init__(self) -> None:
        self.saved: dict[str, Any] | None = None

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if not (isinstance(exception, SIGTERMException) or trainer.received_sigterm) or trainer.sanity_checking:
            return
        # the callback that keeps last.ckpt (save_last), so a resume finds one file either way
        keepers = [cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint)]
        keeper = next((cb for cb in keepers if cb.save_last), keepers[0] if keepers else None)
        if keeper is not None and keeper.dirpath:
            path = Path(keeper.dirpath) / f"{keeper.CHECKPOINT_NAME_LAST}{keeper.FILE_EXTENSION}"
        else:
            path = Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"
        trainer.save_checkpoint(path)  # through the trainer's CheckpointIO: atomic
        if keeper is not None:
            keeper.last_model_path = str(path)  # the summary's last_checkpoint
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
