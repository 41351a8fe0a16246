"""Resuming a run: which checkpoint ``ckpt_path`` means (``last``, ``last_or_new``, a path), checked before
Lightning restores it."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from colorgan.checkpoint import CheckpointError, load_checkpoint

# Lightning's own names for ``trainer.fit(ckpt_path=...)``, resolved by Lightning itself.
LIGHTNING_CKPT_KEYWORDS = ("last", "best", "hpc", "registry")
# resolved by ``resolve_resume_path`` before Lightning sees them
RESUME_KEYWORDS = ("last", "last_or_new")
log = logging.getLogger(__name__)


def newest_last_checkpoint(folders: Iterable[Path]) -> Path | None:
    """The newest ``last*.ckpt`` in ``folders``: what Lightning's ``ckpt_path="last"`` would pick."""
    found = [p for folder in folders if folder.is_dir() for p in folder.glob("last*.ckpt") if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def _newest_other_run(runs_dir: Path | None, run_dir: Path) -> Path | None:
    """The run folder beside ``run_dir`` with the newest ``checkpoints/last*.ckpt``, for the hint."""
    others = [d / "checkpoints" for d in runs_dir.glob("*") if d.resolve() != run_dir.resolve()] if runs_dir else []
    found = newest_last_checkpoint(others)
    return found.parent.parent if found else None


def resolve_resume_path(
    ckpt_path: str | Path | None, checkpoint_dirs: list[Path], run_dir: Path, runs_dir: Path | None = None
) -> str | None:
    """``ckpt_path`` as the file ``trainer.fit`` resumes from, or None to start afresh.

    ``last`` is the newest ``last*.ckpt`` in this run's checkpoint folders and an error when there is
    none: asking to resume never silently starts over. ``last_or_new`` starts afresh then (for
    pre-emptible machines, where the same command starts a job and resumes it). Any other value is
    passed on as it is.
    """
    if ckpt_path is None or str(ckpt_path) not in RESUME_KEYWORDS:
        return None if ckpt_path is None else str(ckpt_path)
    found = newest_last_checkpoint(checkpoint_dirs)
    if found is not None:
        log.info("ckpt_path=%s: resuming from %s", ckpt_path, found)
        return str(found)
    searched = ", ".join(str(d) for d in checkpoint_dirs)
    if str(ckpt_path) == "last_or_new":
        log.info("ckpt_path=last_or_new: no last*.ckpt in %s; starting a new run", searched)
        return None
    other = _newest_other_run(runs_dir, run_dir)
    example = f" (the newest run of this task with one: hydra.run.dir={other})" if other else ""
    raise CheckpointError(
        f"ckpt_path=last: no last*.ckpt in {searched}, so there is nothing to resume in the run folder {run_dir}. "
        f"To resume a run, name its folder: hydra.run.dir=<run folder> ckpt_path=last{example}. To resume when a "
        "checkpoint exists and start a new run otherwise (e.g. on pre-emptible machines), use ckpt_path=last_or_new."
    )


def check_resume_checkpoint(path: str | Path, model: nn.Module) -> None:
    """Before ``trainer.fit(ckpt_path=...)``: a safe, complete checkpoint of this very model.

    Lightning would fail later, mid-restore, with a list of every mismatched key; this names
    the file, says what differs and what to do instead.
    """
    if str(path) in LIGHTNING_CKPT_KEYWORDS:
        return
    ckpt = load_checkpoint(path)
    state = ckpt.get("state_dict")
    if not isinstance(state, dict) or "optimizer_states" not in ckpt or "loops" not in ckpt:
        raise CheckpointError(
            f"checkpoint {path} is not a full training checkpoint (it lacks state_dict, optimizer_states or loops), "
            "so the run cannot resume from it; use model.init_from=PATH to start from its generator instead"
        )
    plain = lambda key: key.replace("._orig_mod", "")  # torch.compile's wrapper adds this to names
    expected = {plain(k): tuple(v.shape) for k, v in model.state_dict().items()}
    found = {plain(k): tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
    missing, unexpected = sorted(expected.keys() - found.keys()), sorted(found.keys() - expected.keys())
    reshaped = sorted(k for k in expected.keys() & found.keys() if expected[k] != found[k])
    if missing or unexpected or reshaped:
        details = [
            f"{label} {len(keys)} (e.g. {keys[0]})"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("other shapes", reshaped))
            if keys
        ]
        raise CheckpointError(
            f"checkpoint {path} was written by a different model ({'; '.join(details)}); resume with the same "
            "experiment and model settings as the run that wrote it, or use model.init_from=PATH to start a new "
            "run from its generator"
        )
