"""Where a command will write, checked before it does any work: a clear error, not a crash at the end."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

from colorgan.errors import ColorganError


class OutputPlaceError(ColorganError, ValueError):
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


def _same_path(a: Path, b: Path) -> bool:
    a, b = a.expanduser(), b.expanduser()
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def training_file_problem(path: Path) -> str | None:
    """Why an output must not be written at ``path``: a checkpoint, a run's checkpoints folder, a model's file.

    A run's ``checkpoints/`` holds its training state only: resuming picks the newest ``last*.ckpt``
    there, and Lightning removes older epochs there by name.
    """
    from colorgan.model_folder import CONFIG_NAME, WEIGHTS_NAME  # model_folder -> io: imported when needed

    path = path.expanduser()
    if path.suffix == ".ckpt" and (path.exists() or path.is_symlink()):
        return "is an existing checkpoint, which colorgan never writes over"
    if path.parent.name == "checkpoints" and any(path.parent.glob("*.ckpt")):
        return f"is inside a run's checkpoints folder {path.parent}, which holds training checkpoints only"
    if path.name in (WEIGHTS_NAME, CONFIG_NAME) and (path.parent / CONFIG_NAME).is_file():
        return f"is a file of the model folder {path.parent}"
    return None


def check_not_an_input(path: Path, inputs: Iterable[tuple[str, str | Path | None]], option: str = "--out") -> None:
    """Before any work: ``path`` is none of ``inputs`` ((option, path) pairs) and no training file (above)."""
    for name, given in inputs:
        if given is not None and _same_path(path, Path(given)):
            raise OutputPlaceError(
                f"{option} {path} is the {name} it would be made from; writing it would destroy the input: "
                f"choose another {option}"
            )
    problem = training_file_problem(path)
    if problem:
        raise OutputPlaceError(
            f"{option} {path} {problem}; nothing was written: choose another {option} (a new file, outside a run's "
            "checkpoints folder)"
        )
