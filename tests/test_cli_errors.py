"""Mistakes at the command line read as one message (what, which key or path, the fix), exit non-zero,
and leave no half-made run folder behind; debug=true (or HYDRA_FULL_ERROR=1) shows the traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli import output, run_script
from tests.conftest import train_overrides

pytestmark = pytest.mark.slow  # each test starts train.py or evaluate.py

HINT = "debug=true"


def made_folders(logs: Path) -> list[Path]:
    return [p for p in logs.rglob("*")] if logs.exists() else []


def test_train_config_error_is_one_message_and_leaves_no_run_folder(data_dir, tmp_path):
    logs = tmp_path / "logs"
    overrides = [*train_overrides("cifar_pretrain", "model.lambda_l1=inf"), f"paths.data_dir={data_dir}"]
    result = run_script("train.py", *overrides, f"paths.log_dir={logs}")
    assert result.returncode == 1, output(result)
    assert "model.lambda_l1=inf is invalid: it must be a finite number >= 0" in result.stderr
    assert HINT in result.stderr
    assert "Traceback" not in output(result) and len(result.stderr.strip().splitlines()) <= 4
    assert made_folders(logs) == []  # the timestamped run folder Hydra made is gone, and its parents


def test_debug_true_shows_the_traceback(data_dir, tmp_path):
    overrides = [*train_overrides("cifar_pretrain", "model.lambda_l1=inf"), f"paths.data_dir={data_dir}"]
    result = run_script("train.py", *overrides, f"paths.log_dir={tmp_path}", "debug=true")
    assert result.returncode != 0
    assert "Traceback" in output(result) and "model.lambda_l1=inf is invalid" in output(result)


def test_evaluate_missing_checkpoint_is_one_message(data_dir, tmp_path):
    missing = tmp_path / "nope.ckpt"
    logs = tmp_path / "logs"
    result = run_script("evaluate.py", f"ckpt_path={missing}", f"paths.data_dir={data_dir}", f"paths.log_dir={logs}")
    assert result.returncode == 1, output(result)
    assert f"checkpoint {missing} does not exist" in result.stderr and HINT in result.stderr
    assert "Traceback" not in output(result)
    assert made_folders(logs) == []


def test_unwritable_run_folder_is_named_before_anything_runs(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    result = run_script("train.py", *train_overrides("cifar_pretrain"), f"hydra.run.dir={blocker / 'run'}")
    assert result.returncode == 1, output(result)
    assert f"hydra.run.dir={blocker / 'run'} cannot be written: {blocker} is a file" in result.stderr
    assert "Traceback" not in output(result)
