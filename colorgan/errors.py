"""Known mistakes and how every command ends on one: the same message shape and exit codes everywhere.

A mistake colorgan can name (a path, a file, a config value, the data) raises a ``ColorganError`` whose
message says what is wrong, naming the key or file, and the fix; every command prints that one line
instead of a traceback. Bugs keep their traceback.

Exit codes, the same for ``train.py``, ``evaluate.py``, ``colorgan-colorize``, ``colorgan-export``,
``colorgan-demo`` and every ``python -m colorgan...`` program:

* 0: done.
* 1: a known mistake, or some inputs failed (each named); one line ``PROG: error: MESSAGE`` on stderr.
* 2: the command line itself is wrong (an unknown flag, a missing argument): argparse's usage message.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

EXIT_OK = 0
EXIT_MISTAKE = 1
EXIT_USAGE = 2


class ColorganError(Exception):
    """A known mistake: the message names the key or file and the fix, so it is shown without a traceback."""


def error_line(prog: str, message: Any) -> str:
    """The one shape of every failure message."""
    return f"{prog}: error: {message}"


def fail(prog: str, message: Any, file: TextIO | None = None, write: Any = None) -> int:
    """Print ``PROG: error: MESSAGE`` to stderr (through ``write``, e.g. tqdm.write, when progress bars are
    drawn) and return :data:`EXIT_MISTAKE` for ``main`` to return."""
    line = error_line(prog, message)
    if write is not None:
        write(line, file=file or sys.stderr)
    else:
        print(line, file=file or sys.stderr, flush=True)
    return EXIT_MISTAKE
