"""What colorgan itself wrote, found inside a photo folder: never read as photos.

A ``data.root`` may hold colorgan's own outputs, e.g. ``logs/`` of runs started from inside it. Their
sample grids, evaluation samples and model-card pictures are PNGs the folder loader would otherwise
train on (and the test split score). A folder that colorgan marks as its own is skipped whole: a run
folder of train.py or evaluate.py (``.hydra/``, ``summary.json`` or its lock file), a sweep folder
(``multirun.yaml``), a model folder (``config.json`` of format ``colorgan-generator``); so is a PNG that
``colorgan-colorize`` wrote (it carries that mark).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from PIL import Image

from colorgan.data.images import IMAGE_EXTENSIONS

COLORIZE_MARK = "colorgan-colorize"  # colorize.OUTPUT_MARK: the PNG text key on every colorize output
MODEL_FORMAT = "colorgan-generator"  # model_folder.FORMAT
_RUN_MARKS = {
    ".hydra": "a run folder of train.py or evaluate.py (it holds .hydra/)",
    ".colorgan.lock": "a run folder of train.py or evaluate.py (it holds .colorgan.lock)",  # run_folder.LOCK_FILE
    "summary.json": "a training run folder (it holds summary.json)",
    "multirun.yaml": "a sweep folder of train.py -m (it holds multirun.yaml)",
}


def output_folder_kind(folder: Path) -> str | None:
    """Which colorgan output ``folder`` is, in words; None when it is not one."""
    for name, kind in _RUN_MARKS.items():
        if (folder / name).exists():
            return kind
    config = folder / "config.json"
    if config.is_file() and config.stat().st_size < 1_000_000:
        try:
            if json.loads(config.read_text()).get("format") == MODEL_FORMAT:
                return "a colorgan model folder (its config.json says so)"
        except (OSError, ValueError, AttributeError):
            pass  # not JSON, or not an object: someone else's file
    return None


def is_colorize_output(path: Path) -> bool:
    """A PNG carrying colorize's mark (only the header is read)."""
    if path.suffix.lower() != ".png":
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                return im.format == "PNG" and COLORIZE_MARK in im.info
    except Exception:  # unreadable: the loader reports it as a bad image, not as an output
        return False


def find_photos(root: Path) -> tuple[list[Path], dict[str, str]]:
    """The image files under ``root`` (sorted, as ``find_images``), and what was left out as colorgan's own:
    ``{path: why}`` for each output folder (skipped whole) and each colorize output."""
    files: list[Path] = []
    left_out: dict[str, str] = {}
    for folder, subfolders, names in os.walk(root):
        here = Path(folder)
        kind = output_folder_kind(here)
        if kind is not None:
            left_out[str(here)] = kind
            subfolders[:] = []
            continue
        for name in names:
            path = here / name
            if path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
                continue
            if is_colorize_output(path):
                left_out[str(path)] = "an output of colorgan-colorize (a marked PNG)"
            else:
                files.append(path)
    return sorted(files), left_out
