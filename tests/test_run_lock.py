"""One process at a time in a run folder: a second train.py or evaluate.py there is refused before it
writes anything, and a lock left by a killed process blocks nobody.

Every case is set up by holding the lock from this process (or a child that is then killed), so no
test depends on two runs overlapping in time."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from colorgan.runs.folder import LOCK_FILE, RunFolderBusyError, lock_run_folder, release_run_folder
from tests.cli import files_of, output, run_script
from tests.conftest import ROOT, train_overrides

HEADER = "epoch,step,train/g_l1_step\n"


@pytest.fixture
def earlier_run(tmp_path: Path) -> Path:
    """A run folder as an earlier attempt left it: its config, metrics and last checkpoint."""
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("task_name: train\n")
    (run / "csv").mkdir()
    (run / "csv" / "metrics.csv").write_text(HEADER + "0,1,0.5\n")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"not read: the run is refused first")
    return run


@pytest.fixture
def held(earlier_run: Path) -> Iterator[Path]:
    """The run folder's lock, held by this process as a running train.py would hold it."""
    with open(earlier_run / LOCK_FILE, "a") as file:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield earlier_run


@pytest.mark.parametrize(
    ("script", "extra"),
    [
        ("train.py", ["ckpt_path=last"]),  # a second resume of the same run
        ("train.py", []),  # a new run given the same hydra.run.dir
        ("evaluate.py", ["ckpt_path=checkpoints/last.ckpt"]),
    ],
)
def test_a_second_process_in_a_locked_run_folder_is_refused_and_changes_nothing(data_dir, held, script, extra):
    before = files_of(held)
    overrides = train_overrides("cifar_pretrain") if script == "train.py" else []
    result = run_script(script, *overrides, f"paths.data_dir={data_dir}", f"hydra.run.dir={held}", *extra)
    assert result.returncode == 1, output(result)
    assert f"hydra.run.dir={held} is in use by another" in result.stderr
    assert str(held / LOCK_FILE) in result.stderr and "Traceback" not in output(result)
    assert files_of(held) == before  # metrics.csv keeps its one header, the config its content


def test_a_lock_left_by_a_killed_process_blocks_nobody(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_AND_WAIT, str(run)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderBusyError, match="is in use by another"):
            lock_run_folder(run)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (run / LOCK_FILE).is_file()  # the file stays behind; its lock went with the process
    try:
        lock_run_folder(run)  # the next run takes the folder
    finally:
        release_run_folder()


HOLD_AND_WAIT = """
import sys
from pathlib import Path
from colorgan.runs.folder import lock_run_folder
lock_run_folder(Path(sys.argv[1]))
print("locked", flush=True)
sys.stdin.read()  # until killed
"""
