"""Run train.py / evaluate.py as a user does: a fresh Python process, Hydra included."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import HANG_GUARD_S, ROOT


def run_script(script: str, *overrides: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python <script> overrides...`` from the repository root; stdout and stderr kept apart."""
    full_env = {**os.environ, "COLORGAN_ROOT": str(ROOT), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **env}
    if "HYDRA_FULL_ERROR" not in env:  # the plain user's view, whatever this shell sets
        full_env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, script, *overrides],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )


def output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def files_of(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes: what a command must leave as it was."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
