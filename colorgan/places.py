"""Where a command will write, checked before it does any work: a clear error, not a crash at the end."""

from __future__ import annotations

import tempfile
from pathlib import Path


class OutputPlaceError(ValueError):
    """An output path that cannot be written: something other than a folder in the way, or no write access."""


def folder_problem(folder: Path) -> str | None:
    """Why files cannot be written into ``folder`` (created with its parents if missing), or None.

    The nearest existing folder is tried by creating a nameless temporary file in it: permission
    bits do not tell (root ignores them, and read-only mounts refuse even root). A dangling symlink
    on the way counts as existing: it is in the way.
    """
    existing = next((p for p in (folder, *folder.parents) if p.exists() or p.is_symlink()), Path.cwd())
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    try:
        with tempfile.TemporaryFile(dir=existing):
            return None
    except OSError as err:
        return f"cannot write in {existing} ({err.strerror or err})"


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
