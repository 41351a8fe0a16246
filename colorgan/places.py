"""Where a command will write, checked before it does any work: a clear error, not a crash at the end."""

from __future__ import annotations

import tempfile
from pathlib import Path


class OutputPlaceError(ValueError):
    """An output path that cannot be written: something other than a folder in the way, or no write access."""


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (a dangling symlink counts: it is in the way)."""
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return Path.cwd()


def _write_error(folder: Path) -> OSError | None:
    """Why a file cannot be created in ``folder``, found by creating a nameless temporary one.

    Permission bits do not tell: root ignores them, and read-only mounts refuse even root.
    """
    try:
        with tempfile.TemporaryFile(dir=folder):
            return None
    except OSError as err:
        return err


def folder_problem(folder: Path) -> str | None:
    """Why files cannot be written into ``folder`` (created with its parents if missing), or None."""
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    error = _write_error(existing)
    if error is not None:
        return f"cannot write in {existing} ({error.strerror or error})"
    return None


def check_output_folder(folder: Path, option: str = "--out") -> None:
    """``folder`` is a writable folder, or can be created in one."""
    problem = folder_problem(folder)
    if problem:
        raise OutputPlaceError(f"{option} {folder}: {problem}")


def check_output_file(path: Path, option: str = "--out", example: str = "model.onnx") -> None:
    """``path`` names a file, not a folder, in a folder that is writable or can be created in one."""
    if path.is_dir():
        raise OutputPlaceError(f"{option} {path} is a folder; give the file to write, e.g. {path / example}")
    problem = folder_problem(path.parent)
    if problem:
        raise OutputPlaceError(f"{option} {path}: {problem}")
