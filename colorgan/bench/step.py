"""Part ``step``: the D + G training step of each model and variant through a real ``Trainer.fit``."""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from lightning.pytorch import Callback, Trainer
from torch.utils.flop_counter import FlopCounterMode

from colorgan.bench.common import smooth_uint8_images, synchronize
from colorgan.data.datamodule import ColorizationDataModule
from colorgan.data.device_batches import DeviceBatches
from colorgan.train.module import ColorizationModule


class SyntheticData(ColorizationDataModule):
    """Device-resident photo-like images: isolates the training step from any data cost."""

    def __init__(self, size: int, batch_size: int, batches: int, device: torch.device) -> None:
        super().__init__(batch_size=batch_size, image_size=size)
        self.images = smooth_uint8_images(batch_size * min(batches, 4), size, device)
        self.labels = torch.zeros(len(self.images), dtype=torch.long, device=device)
        self.batches = batches

    def train_dataloader(self) -> Any:
        repeat = -(-self.batches // (len(self.images) // self.batch_size))
        images = self.images.repeat(repeat, 1, 1, 1)
        return DeviceBatches(images, self.labels.repeat(repeat), self.batch_size, shuffle=False, drop_last=True)


class StepTimer(Callback):
    """Times each training step (D + G, the module's own code) and counts FLOPs on the first."""

    def __init__(self, device: torch.device, count_flops: bool) -> None:
        self.device, self.count_flops = device, count_flops
        self.times: list[float] = []
        self.flops_per_batch: int | None = None
        self._counter: FlopCounterMode | None = None

    def on_train_batch_start(self, trainer: Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if batch_idx == 0 and self.count_flops:
            self._counter = FlopCounterMode(display=False)
            self._counter.__enter__()
        synchronize(self.device)
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        synchronize(self.device)
        self.times.append(time.perf_counter() - self._start)
        if self._counter is not None:
            self._counter.__exit__(None, None, None)
            self.flops_per_batch = self._counter.get_total_flops()
            self._counter = None


STEP_MODELS: dict[str, dict[str, Any]] = {
    "cifar_unet32": {
        "size": 32,
        "batch": 128,
        "generator": {"name": "unet", "image_size": 32},
        "discriminator": {"name": "patchgan", "n_layers": 2},
    },
    "unet256": {
        "size": 256,
        "batch": 16,
        "generator": {"name": "unet", "image_size": 256},
        "discriminator": {"name": "patchgan", "n_layers": 3},
    },
    "resnet18_unet256": {
        "size": 256,
        "batch": 16,
        "generator": {"name": "resnet18_unet", "image_size": 256},
        "discriminator": {"name": "patchgan", "n_layers": 3},
    },
}
STEP_VARIANTS: dict[str, dict[str, Any]] = {
    "fp32": {"precision": "32-true"},
    "channels_last": {"precision": "32-true", "channels_last": True},
    "bf16-mixed": {"precision": "bf16-mixed"},
    "bf16-mixed+channels_last": {"precision": "bf16-mixed", "channels_last": True},
    "compile": {"precision": "32-true", "compile": True},
    "compile+channels_last": {"precision": "32-true", "compile": True, "channels_last": True},
}


def time_training_steps(
    spec: dict[str, Any], variant: dict[str, Any], device: torch.device, steps: int, count_flops: bool
) -> tuple[list[float], int | None]:
    """(seconds of each D + G step after one warm-up step, FLOPs per batch) through a real Trainer.fit."""
    model = ColorizationModule(
        generator=spec["generator"],
        discriminator=spec["discriminator"],
        lambda_gan=1.0,
        channels_last=variant.get("channels_last", False),
        compile=variant.get("compile", False),
    )
    # the first two steps of a fresh model are warm-up: the second still ran 15-20% slower than the
    # third at 256 x 256 (fresh pages, oneDNN primitives for the frozen-D backward of the G step)
    warmup = 3 if variant.get("compile") else 2
    batches = warmup + steps
    timer = StepTimer(device, count_flops)
    trainer = Trainer(
        accelerator=device.type,
        devices=1,
        precision=variant["precision"],
        max_epochs=1,
        limit_train_batches=batches,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(model, datamodule=SyntheticData(spec["size"], spec["batch"], batches, device))
    return timer.times[warmup:], timer.flops_per_batch


def part_step(
    device: torch.device,
    quick: bool,
    repeats: int,
    models: list[str],
    variants: list[str],
    batch: int | None = None,
) -> list[dict[str, Any]]:
    """Each model's variants are timed in interleaved rounds (A, B, C, A, B, C, ...).

    A shared CPU drifts by 20% and more over minutes; timing one variant after the other lets
    that drift decide the ratio, while interleaving spreads it over every variant alike. Each
    round is a fresh ``Trainer.fit`` with two warm-up steps; the figure is the median of all rounds.
    """
    rows = []
    for name in models:
        spec = dict(STEP_MODELS[name], **({"batch": batch} if batch else {}))
        if quick:
            spec.update(
                size=32,
                batch=4,
                generator={
                    **spec["generator"],
                    "image_size": 32,
                    **({"ngf": 8} if spec["generator"]["name"] == "unet" else {}),
                },
                discriminator={**spec["discriminator"], "n_layers": 2, "ndf": 8},
            )
        steps_per_round = 1 if spec["size"] >= 128 else 3
        times: dict[str, list[float]] = {v: [] for v in variants}
        flops_per_image = None
        for _ in range(repeats):
            for variant_name in variants:
                step_times, flops = time_training_steps(
                    spec, STEP_VARIANTS[variant_name], device, steps_per_round, count_flops=flops_per_image is None
                )
                times[variant_name] += step_times
                if flops is not None:
                    flops_per_image = flops / spec["batch"]
        baseline = None
        for variant_name in variants:
            images_per_s = spec["batch"] / statistics.median(times[variant_name])
            baseline = baseline or images_per_s
            achieved = flops_per_image * images_per_s / 1e9 if flops_per_image else None
            rows.append(
                {
                    "model": name,
                    "size": spec["size"],
                    "batch": spec["batch"],
                    "variant": variant_name,
                    "images_per_s": images_per_s,
                    "ratio_vs_fp32": images_per_s / baseline,
                    "timed_steps": len(times[variant_name]),
                    "gflop_per_image": flops_per_image / 1e9 if flops_per_image else None,
                    "achieved_gflops": achieved,
                }
            )
            print(f"  step {name:>17} {variant_name:<26} {images_per_s:8.2f} img/s", flush=True)
    return rows


def add_peak_fractions(rows: list[dict[str, Any]], limit: dict[str, float]) -> None:
    """Achieved FLOP/s as a fraction of the measured fp32 (and, for bf16 variants, bf16) conv limit, and of the
    bf16 matmul rate (a GPU's headline figure)."""
    peak, peak_bf16 = limit.get("conv3x3_fp32_gflops"), limit.get("conv3x3_bf16_gflops")
    matmul_bf16 = limit.get("matmul_bf16_gflops")
    for row in rows:
        achieved = row.get("achieved_gflops")
        row["fraction_of_fp32_conv_peak"] = achieved / peak if achieved and peak else None
        bf16 = "bf16" in row["variant"]
        row["fraction_of_bf16_conv_peak"] = achieved / peak_bf16 if achieved and peak_bf16 and bf16 else None
        row["fraction_of_bf16_matmul"] = achieved / matmul_bf16 if achieved and matmul_bf16 and bf16 else None
