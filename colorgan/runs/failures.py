"""Known mistakes (a config value, a path, a checkpoint, missing data) end a command with one clear message.

The message already names the key or file and the fix, so the 15-40 lines of traceback around it
only hide it. Unknown errors (bugs) keep their traceback; ``debug=true`` or ``HYDRA_FULL_ERROR=1``
shows it for every error.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Any, NoReturn

from hydra.errors import InstantiationException

import colorgan
from colorgan.errors import EXIT_MISTAKE, ColorganError, error_line

DEBUG_HINT = "run again with debug=true (or HYDRA_FULL_ERROR=1) to see the traceback"
_PACKAGE = Path(colorgan.__file__).resolve().parent


def _raised_by_colorgan(err: BaseException) -> bool:
    """Whether colorgan's own code raised ``err`` (a check on a value), not a library it called."""
    frames = traceback.extract_tb(err.__traceback__)
    return bool(frames) and Path(frames[-1].filename).resolve().is_relative_to(_PACKAGE)


def user_error(err: BaseException) -> BaseException | None:
    """The error to show as a message when ``err`` is a known mistake, else None (a bug: keep the traceback).

    Hydra wraps what a ``_target_`` raises in an InstantiationException; the mistake is its cause.
    """
    if isinstance(err, InstantiationException) and err.__cause__ is not None:
        err = err.__cause__
    if isinstance(err, ColorganError) or (isinstance(err, ValueError) and _raised_by_colorgan(err)):
        return err
    return None


def show_traceback(cfg: Any) -> bool:
    """``debug=true`` in the config, or Hydra's own switch ``HYDRA_FULL_ERROR=1``."""
    return bool(cfg.get("debug", False)) or os.environ.get("HYDRA_FULL_ERROR") == "1"


def exit_with_message(err: BaseException, note: str | None = None) -> NoReturn:
    """Print to stderr the error's own message (what, which key or path, the fix), then what became of the
    run folder, and exit with code 1 (colorgan.errors)."""
    noted = f"\n{note[0].upper()}{note[1:]}." if note else ""
    prog = Path(sys.argv[0]).name or "colorgan"
    print(f"{error_line(prog, err)}{noted}\n({type(err).__name__}; {DEBUG_HINT})", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_MISTAKE)
