"""Part ``epoch``: a real ``train.py`` epoch on CIFAR-10 against the step-only time of the same batches."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from colorgan.bench.common import ROOT, accelerator
from colorgan.bench.default_precision import default_step_variant


def part_epoch(
    device: torch.device, quick: bool, data_dir: Path | None, fraction: float, step_rows: list[dict[str, Any]]
) -> dict[str, Any]:
    """A real ``train.py`` epoch (GAN stage, CIFAR-10, default precision and memory format) against the
    step-only time of the same variant for the same batches."""
    batch = 128
    variant = default_step_variant(device)
    with tempfile.TemporaryDirectory() as out:
        overrides = [
            "experiment=cifar_gan",
            "trainer.max_epochs=1",
            f"trainer.limit_train_batches={fraction}",
            "trainer.limit_val_batches=0",
            "trainer.num_sanity_val_steps=0",
            f"data.batch_size={batch}",
            f"trainer.accelerator={accelerator(device)}",
            f"hydra.run.dir={out}",
        ]
        if data_dir:
            overrides.append(f"paths.data_dir={data_dir}")
        if quick:
            overrides += ["model.generator.ngf=8", "model.discriminator.ndf=8"]
            overrides += ["data.batch_size=16", "data.val_size=16"]
            batch = 16
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, str(ROOT / "train.py"), *overrides],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"train.py failed for the epoch benchmark:\n{proc.stderr[-3000:]}")
        process_s = time.perf_counter() - start
        summary = json.loads((Path(out) / "summary.json").read_text())
    epoch_s = summary["last_train_epoch_s"]
    images = summary["train_images_per_sec"]
    n_batches = round(45000 * fraction / batch) if not quick else None
    step = next((r for r in step_rows if r["model"] == "cifar_unet32" and r["variant"] == variant), None)
    step_only_s = n_batches * batch / step["images_per_s"] if (step and n_batches and not quick) else None
    return {
        "experiment": "cifar_gan",
        "variant": variant,
        "fraction_of_epoch": fraction,
        "batch": batch,
        "batches": n_batches,
        "epoch_wall_s": epoch_s,
        "process_wall_s": process_s,
        "images_per_s_inside_steps": images,
        "step_only_s": step_only_s,
        "overhead": epoch_s / step_only_s - 1 if step_only_s else None,
        "full_epoch_minutes_estimate": epoch_s / fraction / 60,
    }
