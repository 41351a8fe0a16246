"""A folder nobody may write in, for the checks that commands make before they write."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest


def _writable(folder: Path) -> bool:
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def unwritable_folder(tmp_path: Path) -> Path:
    """A read-only folder; root writes anywhere, so there /sys (read-only to everyone), else skip."""
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    if not _writable(folder):
        return folder
    folder.chmod(0o755)
    if Path("/sys").is_dir() and not _writable(Path("/sys")):
        return Path("/sys")
    pytest.skip("no folder here refuses writes (running as root without a read-only /sys)")
