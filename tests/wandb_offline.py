"""Reads what an offline W&B run recorded, so tests can check what a run logged without an account or network."""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class OfflineRun:
    """What an offline W&B run recorded, read back from its ``run-*.wandb`` file."""

    path: Path
    name: str = ""
    group: str = ""
    job_type: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None  # None: the run was never finished

    def values(self, key: str) -> list[Any]:
        """Every logged value of ``key``, in order."""
        return [row[key] for row in self.history if key in row]


def _wandb_records(path: Path) -> Any:
    """The protobuf records of a W&B transaction log: a 7-byte header, then LevelDB-log blocks
    (32 KiB; each chunk: crc32, length, type FULL/FIRST/MIDDLE/LAST)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run file")
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer: padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:
            break
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def _item_key(item: Any) -> str:
    return "/".join(item.nested_key) if item.nested_key else item.key


def read_offline_run(run_dir: str | Path, wait_s: float = 0.0) -> OfflineRun:
    """Read an offline run folder (``.../wandb/offline-run-*``) without uploading it.

    W&B's service writes the file in the background; ``wait_s`` waits that long at most for the
    exit record that ``wandb.finish()`` leaves at the end.
    """
    deadline = time.monotonic() + wait_s
    while True:
        run = _read_offline_run(run_dir)
        if run.exit_code is not None or time.monotonic() >= deadline:
            return run
        time.sleep(0.2)


def _read_offline_run(run_dir: str | Path) -> OfflineRun:
    path = next(Path(run_dir).glob("run-*.wandb"))
    run = OfflineRun(path=path)
    for record in _wandb_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.name, run.group, run.job_type = record.run.display_name, record.run.run_group, record.run.job_type
            updates = record.run.config.update
        elif kind == "config":
            updates = record.config.update
        elif kind == "history":
            run.history.append({_item_key(i): json.loads(i.value_json) for i in record.history.item})
            continue
        elif kind == "summary":
            run.summary.update({_item_key(i): json.loads(i.value_json) for i in record.summary.update})
            continue
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
            continue
        else:
            continue
        run.config.update({_item_key(i): json.loads(i.value_json) for i in updates})
    return run
