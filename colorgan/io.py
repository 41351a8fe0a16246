"""Files in and out, each way written once: atomic writes, safe torch loads, cached weight look-ups.

Every file colorgan writes (checkpoints, images, reports, exports, prepared data) appears whole or
not at all: it is written beside its destination and renamed into place. Every torch file it reads
goes through ``weights_only=True``, so no pickled code runs, whatever the file claims to be.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch


class UnreadableFile(RuntimeError):
    """A torch file that is missing, unsafe, corrupt or not what the caller expected; the message says the fix."""


def fsync_folder(folder: Path) -> None:
    """Make a rename durable (a power cut right after could otherwise undo it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def replacing(path: str | Path, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``, else remove it.

    The temporary name keeps the suffix (``.NAME.PID.tmp.SUFFIX``) so writers that choose a format by
    suffix (PIL, matplotlib, np.savez) still do. ``durable`` fsyncs the file and its folder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if durable:
            fsync_folder(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: str | Path, write: Callable[[Path], Any], durable: bool = False) -> Path:
    """Call ``write(tmp_path)`` and move the result to ``path`` only when it succeeded."""
    with replacing(path, durable=durable) as tmp:
        write(tmp)
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def save_torch_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save`` that a kill mid-write cannot turn into a half file (fsynced: checkpoints matter)."""
    return write_atomic(path, lambda tmp: torch.save(obj, tmp), durable=True)


def save_image_atomic(image: Any, path: str | Path, **save_kwargs: Any) -> Path:
    """A PIL image as PNG, or as JPEG (quality 90 unless given) for a .jpg/.jpeg path."""
    path = Path(path)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        save_kwargs.setdefault("quality", 90)
        return write_atomic(path, lambda tmp: image.convert("RGB").save(tmp, format="JPEG", **save_kwargs))
    return write_atomic(path, lambda tmp: image.save(tmp, format="PNG", **save_kwargs))


def load_torch_file(path: str | Path, what: str = "file", map_location: Any = "cpu") -> Any:
    """``torch.load(weights_only=True)``: tensors and plain data only, never code; errors name the file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UnreadableFile(f"{what} {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # refused pickles, corrupt archives: either way unusable
        raise UnreadableFile(f"{what} {path} could not be read safely ({type(err).__name__}: {err})") from err


def hub_cache_file(url_or_name: str) -> Path:
    """Where ``torch.hub`` (and so torchvision and torch-fidelity) keeps a downloaded file."""
    return Path(torch.hub.get_dir()) / "checkpoints" / url_or_name.rsplit("/", 1)[-1]


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    """A GitHub Markdown table; ``|`` inside a cell is escaped."""

    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
