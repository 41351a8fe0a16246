"""Files in and out, each way written once: atomic writes, safe torch loads, bounded JSON reads.

Every file colorgan writes (checkpoints, images, reports, exports, prepared data) appears whole or
not at all: it is written beside its destination and renamed into place. Every torch file it reads
goes through ``weights_only=True``, so no pickled code runs, whatever the file claims to be; a file
that is not a torch file at all (a folder, an image, text) is called what it is.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import torch

from colorgan.errors import ColorganError


class UnreadableFile(ColorganError, RuntimeError):
    """A torch file that is missing, unsafe, corrupt or not what the caller expected; the message says the fix."""


# ------------------------------------------------------------------------------------------ writing
def fsync_folder(folder: Path) -> None:
    """Make a rename durable (a power cut right after could otherwise undo it)."""
    with suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# What colorgan names a file while it is being written (:func:`replacing`): ``.NAME.PID.tmp.SUFFIX``.
# A kill leaves it behind; the PID tells whether its writer is gone.
TEMP_FILE_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp(?:\.[^.]*)?$")
_swept_folders: set[Path] = set()


def is_temp_file(path: str | Path) -> bool:
    """Whether ``path`` is named as colorgan names a file it is still writing: never an input or an output."""
    return TEMP_FILE_NAME.match(Path(path).name) is not None


def is_stale(pid: int) -> bool:
    """Whether the process ``pid`` that named a temporary file is gone (killed while writing)."""
    return pid != os.getpid() and not _pid_alive(pid)


def remove_stale_temp_files_in(folder: Path) -> None:
    """Delete the temporary files in ``folder`` left by killed writers; once per folder and process.

    Once, so writing thousands of files into one folder lists it once, not once per file.
    """
    key = folder.resolve()
    if key in _swept_folders:
        return
    _swept_folders.add(key)
    with suppress(OSError):
        for entry in os.scandir(folder):
            match = TEMP_FILE_NAME.match(entry.name)
            if match and is_stale(int(match.group("pid"))) and entry.is_file(follow_symlinks=False):
                with suppress(OSError):
                    os.unlink(entry.path)


@contextmanager
def replacing(path: str | Path, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``, else remove it.

    The temporary name keeps the suffix (``.NAME.PID.tmp.SUFFIX``) so writers that choose a format by
    suffix (PIL, matplotlib, np.savez) still do. ``durable`` fsyncs the file and its folder. The first
    write into a folder removes what killed writers left there (:func:`remove_stale_temp_files_in`).
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
    remove_stale_temp_files_in(path.parent)


def write_atomic(path: str | Path, write: Callable[[Path], Any], durable: bool = False) -> Path:
    """Call ``write(tmp_path)`` and move the result to ``path`` only when it succeeded."""
    with replacing(path, durable=durable) as tmp:
        write(tmp)
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    return True


def remove_stale_temp_files(path: Path) -> None:
    """Delete the temporary files of ``path`` left by processes killed while writing it, once they are gone."""
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(\d+)\.tmp{re.escape(path.suffix)}$")
    for tmp in path.parent.glob(f".{path.name}.*.tmp{path.suffix}"):
        match = pattern.match(tmp.name)
        if match and int(match.group(1)) != os.getpid() and not _pid_alive(int(match.group(1))):
            tmp.unlink(missing_ok=True)


def save_torch_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save`` that a kill mid-write cannot turn into a half file (fsynced: checkpoints matter).

    A process killed while saving leaves its temporary file, which can be as large as the
    checkpoint; the next save of the same file removes it.
    """
    path = write_atomic(path, lambda tmp: torch.save(obj, tmp), durable=True)
    remove_stale_temp_files(path)
    return path


def save_image_atomic(image: Any, path: str | Path, **save_kwargs: Any) -> Path:
    """A PIL image as PNG, or as JPEG (quality 90 unless given) for a .jpg/.jpeg path."""
    path = Path(path)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        save_kwargs.setdefault("quality", 90)
        return write_atomic(path, lambda tmp: image.convert("RGB").save(tmp, format="JPEG", **save_kwargs))
    return write_atomic(path, lambda tmp: image.save(tmp, format="PNG", **save_kwargs))


# ------------------------------------------------------------------------------------------ reading
ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive (PyTorch >= 1.6)
PICKLE_PROTOCOLS = range(2, 6)  # older torch.save: a pickle stream, b"\x80" then its protocol
# Words of PyTorch's weights-only unpickler when a pickle names code (a class, a function to call)
UNSAFE_WORDS = ("GLOBAL", "unrecognized function", "allowlisted")


def load_torch_file(
    path: str | Path,
    what: str = "torch file",
    fix: str = "pass a file written by torch.save",
    error: type[UnreadableFile] = UnreadableFile,
    map_location: Any = "cpu",
) -> Any:
    """``torch.load(weights_only=True)``: tensors and plain data only, never code.

    The file is recognised before it is unpickled, so a folder, an image or random bytes are called
    what they are, and only a pickle that names code is reported as unsafe. Every failure raises
    ``error`` naming ``what`` (e.g. "checkpoint"), the path and ``fix``.
    """
    path = Path(path).expanduser()
    problem = _file_problem(path, what)
    if problem:
        raise error(f"{problem}; {fix}")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")  # says to file an issue with torch
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise error(f"{_unpickling_problem(path, what, err)}; {fix}") from err
    except MemoryError:
        raise
    except Exception as err:  # a damaged archive or stream fails in many ways: RuntimeError, EOFError, KeyError...
        raise error(f"{_corrupt(path, what, err)}; {fix}") from err


def _file_problem(path: Path, what: str) -> str | None:
    """What ``path`` is, unless it starts like a file torch.save writes (then None)."""
    if path.is_dir():
        return f"{what} {path} is a folder, not a file"
    if not path.is_file():
        return f"{what} {path} does not exist"
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as err:
        return f"cannot read {what} {path}: {err.strerror or err}"
    if not head:
        return f"{what} {path} is empty (0 bytes)"
    if head.startswith(ZIP_MAGIC):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError) as err:
            return _corrupt(path, what, err)
        if not any(name.endswith("/data.pkl") for name in names):
            return f"{_not_a(path, what)}: it is a zip archive without the data.pkl that torch.save writes"
    elif not (len(head) > 1 and head[0] == 0x80 and head[1] in PICKLE_PROTOCOLS):
        return f"{_not_a(path, what)}: it holds {_kind_of(head)}, not the zip archive that torch.save writes"
    return None


def _not_a(path: Path, what: str, aside: str = "") -> str:
    article = "an" if what[:1].lower() in tuple("aeiou") else "a"
    return f"{path} is not {article} {what}{aside} and could not be read safely"


def _kind_of(head: bytes) -> str:
    """What the first bytes of a file suggest it is, in words."""
    if head.startswith(b"\x89PNG"):
        return "a PNG image"
    if head.startswith(b"\xff\xd8\xff"):
        return "a JPEG image"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "data of an unknown kind"
    return "text" if all(c.isprintable() or c.isspace() for c in text) else "data of an unknown kind"


def _corrupt(path: Path, what: str, err: BaseException) -> str:
    detail = type(err).__name__ + (f": {str(err).splitlines()[0]}" if str(err).strip() else "")
    return f"{what} {path} is truncated or corrupt ({detail})"


def _unpickler_reason(err: pickle.UnpicklingError) -> str:
    """The weights-only unpickler's own finding, without PyTorch's advice around it.

    That advice (set ``weights_only=False``, allowlist the class) would run the code we refuse.
    """
    text = str(err).split("Check the documentation of torch.load")[0].rsplit("WeightsUnpickler error:", 1)[-1]
    lines = [line.strip() for line in text.splitlines() if line.strip() and "weights_only" not in line]
    reason = lines[-1].removeprefix("Weights only load failed. ") if lines else type(err).__name__
    return reason.split(" Please use `torch.serialization")[0]


def _unpickling_problem(path: Path, what: str, err: pickle.UnpicklingError) -> str:
    """Unsafe if the pickle names code; otherwise a pickle that is not (or no longer) what was asked for."""
    reason = _unpickler_reason(err)
    if any(word in reason for word in UNSAFE_WORDS):
        return (
            f"refused to load {path}: it holds objects other than tensors and plain data, which could run "
            f"code when unpickled ({reason})"
        )
    return f"{_not_a(path, what, ', or is a damaged one,')}: PyTorch cannot read the pickle in it ({reason})"


def read_json_object(path: Path, max_bytes: int, what: str, missing: str | None = None) -> tuple[Any, str | None]:
    """(a small JSON file's object, None), or (None, why not) as a phrase to follow the path in a message.

    Files above ``max_bytes`` are not read (a few bytes of settings cannot ask for gigabytes); ``what``
    names what the file should hold; ``missing`` is the phrase for an absent file (default: unreadable).
    """
    try:
        size = path.stat().st_size
        if size > max_bytes:
            return None, f"holds {size:,} bytes, far more than {what} ({max_bytes:,} at most)"
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        return None, missing or f"cannot be read as JSON ({type(err).__name__}: {str(err)[:200]})"
    except (OSError, ValueError, RecursionError) as err:  # RecursionError: JSON nested thousands deep
        return None, f"cannot be read as JSON ({type(err).__name__}: {str(err)[:200]})"
    if not isinstance(value, dict):
        return None, f"holds a JSON {type(value).__name__}, not the object of {what}"
    return value, None
