"""The run folder across attempts: writable before any work, each attempt's Hydra config kept, and a
failed attempt that never started its work undone.

Hydra writes ``.hydra/{config,hydra,overrides}.yaml`` into the run folder before the task runs, so
resuming (``hydra.run.dir=<run> ckpt_path=last``) would overwrite the config of the run it continues.
``KeepAttempts`` (a Hydra callback, ``conf/hydra/default.yaml``) first moves them to
``.hydra/attempt_<k>/``. When the attempt then fails before its work starts (a config, data or
checkpoint mistake), ``settle_failed_attempt`` puts the folder back as it was.

One process at a time works in a run folder: ``KeepAttempts`` takes an exclusive lock on its
``.colorgan.lock`` before touching anything, held until the process ends, however it ends (the kernel
drops an ``flock`` with the process, even after ``kill -9``, so a lock file left behind never blocks).
A second train.py or evaluate.py in the same folder (two resumes, or two runs given one
``hydra.run.dir``) stops at once, naming the folder, before it writes anything there.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are not locked there
    fcntl = None  # type: ignore[assignment]

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from colorgan.errors import ColorganError
from colorgan.output_checks import folder_problem
from colorgan.runs.failures import exit_with_message, show_traceback

HYDRA_FILES = ("config.yaml", "hydra.yaml", "overrides.yaml")
_ATTEMPT_DIR = re.compile(r"^attempt_(\d+)$")
LOCK_FILE = ".colorgan.lock"  # in the run folder; locked (flock) while a process works there


class OutputNotWritableError(ColorganError, OSError):
    """A folder the run must write to cannot be created or written; the message names the key."""


class RunFolderBusyError(ColorganError, OSError):
    """Another process works in this run folder now; the message names the folder."""


_lock: IO[str] | None = None  # the open lock file of this process's run folder: closing it drops the lock


def lock_run_folder(run_dir: Path) -> None:
    """Hold the run folder's lock for the rest of this process, or raise ``RunFolderBusyError``.

    Creates the folder and its (empty) lock file when missing; an existing lock file is left as it is, so a
    refused or undone attempt changes nothing in the folder.
    """
    global _lock
    release_run_folder()
    if fcntl is None:
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    file = open(path, "a")  # noqa: SIM115 (kept open for the life of the run: it holds the lock)
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        file.close()
        raise RunFolderBusyError(
            f"hydra.run.dir={run_dir} is in use by another train.py or evaluate.py, which holds the lock on {path}; "
            "wait until it ends, or give this run another hydra.run.dir. Nothing in the folder was changed"
        ) from None
    _lock = file


def release_run_folder() -> None:
    """Drop this process's run-folder lock, if it holds one (the end of the process does the same)."""
    global _lock
    if _lock is not None:
        _lock.close()
        _lock = None


def check_writable(path: str | Path, key: str) -> None:
    """``path`` is a writable folder, or can be made in its nearest existing parent; leaves nothing behind."""
    path = Path(path).expanduser().absolute()
    problem = folder_problem(path)
    if problem:
        raise OutputNotWritableError(
            f"{key}={path} cannot be written: {problem}; set {key} to a folder you can write to"
        )


@dataclass
class Attempt:
    """One run of train.py / evaluate.py in a run folder, as found when it started."""

    run_dir: Path
    hydra_dir: Path
    created_from: Path | None  # the outermost folder this attempt created; None: the run folder existed
    entries_before: frozenset[str]  # what the run folder held before
    archived: Path | None  # .hydra/attempt_<k>/: the previous attempt's config, moved aside
    work_started: bool = False


_attempt: Attempt | None = None


def archive_hydra_config(hydra_dir: Path) -> Path | None:
    """Move the previous attempt's Hydra files to ``hydra_dir/attempt_<k>/``; None when there are none."""
    present = [hydra_dir / name for name in HYDRA_FILES if (hydra_dir / name).is_file()]
    if not present:
        return None
    numbers = [int(m.group(1)) for p in hydra_dir.iterdir() if (m := _ATTEMPT_DIR.match(p.name)) and p.is_dir()]
    target = hydra_dir / f"attempt_{max(numbers, default=0) + 1}"
    target.mkdir()
    for file in present:
        os.replace(file, target / file.name)
    return target


class KeepAttempts(Callback):
    """Hydra callback: check the run folder can be written and is no other process's, keep the previous
    attempt's ``.hydra`` files."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        global _attempt
        _attempt = None
        subdir = config.hydra.output_subdir
        if subdir is None:  # e.g. DDP ranks > 0, which Lightning re-runs with hydra.output_subdir=null
            return
        run_dir = Path(str(config.hydra.run.dir)).absolute()
        try:
            check_writable(run_dir, "hydra.run.dir")
        except OutputNotWritableError as err:
            if show_traceback(config):
                raise
            exit_with_message(err)
        hydra_dir = run_dir / str(subdir)
        created_from = next((p for p in (*reversed(run_dir.parents), run_dir) if not p.exists()), None)
        entries_before = frozenset(os.listdir(run_dir)) if run_dir.is_dir() else frozenset()
        try:
            lock_run_folder(run_dir)
        except RunFolderBusyError as err:
            if show_traceback(config):
                raise
            exit_with_message(err)
        _attempt = Attempt(
            run_dir=run_dir,
            hydra_dir=hydra_dir,
            created_from=created_from,
            entries_before=entries_before,
            archived=archive_hydra_config(hydra_dir),
        )


def mark_work_started() -> None:
    """From now on a failure keeps the folder as it is: it holds this attempt's work (e.g. checkpoints)."""
    if _attempt is not None:
        _attempt.work_started = True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def settle_failed_attempt() -> str | None:
    """Undo an attempt that failed before its work started; say what was done (None: nothing)."""
    global _attempt
    attempt, _attempt = _attempt, None
    if attempt is None or attempt.work_started or not attempt.run_dir.is_dir():
        return None
    if attempt.created_from is not None:
        _remove(attempt.run_dir)
        folder = attempt.run_dir.parent
        while folder != attempt.created_from.parent and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()  # the parents it made, while empty (another run may have started beside it)
            folder = folder.parent
        return f"nothing was kept: the new run folder {attempt.run_dir} was removed"
    for name in set(os.listdir(attempt.run_dir)) - attempt.entries_before:
        _remove(attempt.run_dir / name)
    if attempt.archived is not None:
        for file in attempt.archived.iterdir():
            os.replace(file, attempt.hydra_dir / file.name)
        attempt.archived.rmdir()
    return f"the run folder {attempt.run_dir} was left as it was"
