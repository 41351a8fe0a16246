"""The peer part (with ``--peer-dir``): colorgan's D + G step against the official pix2pix colorization step."""

from __future__ import annotations

import contextlib
import io
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from colorgan.bench.common import load_size, smooth_uint8_images
from colorgan.bench.default_precision import default_step_variant
from colorgan.bench.step import STEP_MODELS, STEP_VARIANTS, time_training_steps
from colorgan.color import rgb_to_lab_normalized

PEER_VARIANTS = ("fp32", "bf16-mixed", "default")


@contextlib.contextmanager
def peer_imports(peer_dir: Path, argv: list[str]) -> Iterator[None]:
    """The peer checkout importable (its top-level ``models``, ``options``, ``data``, ``util``), its CLI in argv."""
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.path.insert(0, str(peer_dir))
    sys.argv = ["train.py", *argv]
    try:
        yield
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path


def build_peer(peer_dir: Path, batch: int, size: int, ngf: int, ndf: int, workdir: str) -> Any:
    """The official pix2pix ``--model colorization`` (netG unet_256, PatchGAN), built by its own option parser."""
    argv = ["--dataroot", workdir, "--checkpoints_dir", workdir, "--model", "colorization", "--netG", "unet_256"]
    argv += ["--batch_size", str(batch), "--crop_size", str(size), "--load_size", str(load_size(size))]
    argv += ["--ngf", str(ngf), "--ndf", str(ndf)]
    with peer_imports(peer_dir, argv), contextlib.redirect_stdout(io.StringIO()):
        from models import create_model  # the peer's
        from options.train_options import TrainOptions

        opt = TrainOptions().gather_options()
        opt.isTrain, opt.device = True, torch.device("cpu")
        model = create_model(opt)
    model.netG.cpu(), model.netD.cpu()  # it moves them to cuda:0 whenever CUDA exists; this comparison is on the CPU
    return model


def time_peer_steps(model: Any, bf16: bool, steps: int) -> list[float]:
    """Seconds of each ``optimize_parameters`` (D + G) after one warm-up; bf16-mixed is Lightning's: autocast."""
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    times = []
    with autocast:
        for i in range(steps + 1):
            start = time.perf_counter()
            model.optimize_parameters()
            if i:
                times.append(time.perf_counter() - start)
    return times


def part_peer(peer_dir: Path, quick: bool, rounds: int) -> dict[str, Any]:
    """colorgan's D + G step against the official pix2pix colorization model's, same batch and image size, on
    the CPU, in interleaved rounds (colorgan variant, peer, next variant, ...). The peer has one mode, fp32 in
    NCHW, its default; its bf16-mixed is its step under ``torch.autocast(bfloat16)``, as Lightning runs ours."""
    spec = dict(STEP_MODELS["unet256"])
    ngf, ndf = (8, 8) if quick else (64, 64)
    if quick:
        spec.update(
            batch=1, generator={**spec["generator"], "ngf": ngf}, discriminator={**spec["discriminator"], "ndf": ndf}
        )
    cpu = torch.device("cpu")
    ours = {"fp32": "fp32", "bf16-mixed": "bf16-mixed", "default": default_step_variant(cpu)}
    with tempfile.TemporaryDirectory() as workdir:
        model = build_peer(peer_dir, spec["batch"], spec["size"], ngf, ndf, workdir)
        L, ab = rgb_to_lab_normalized(smooth_uint8_images(spec["batch"], spec["size"], cpu))
        model.set_input({"A": L, "B": ab, "A_paths": [], "B_paths": []})
        times: dict[str, dict[str, list[float]]] = {v: {"colorgan": [], "peer": []} for v in PEER_VARIANTS}
        for _ in range(rounds):
            for variant in PEER_VARIANTS:
                times[variant]["colorgan"] += time_training_steps(spec, STEP_VARIANTS[ours[variant]], cpu, 1, False)[0]
                times[variant]["peer"] += time_peer_steps(model, variant == "bf16-mixed", 1)
    rows = []
    for variant in PEER_VARIANTS:
        rate = {who: spec["batch"] / statistics.median(t) for who, t in times[variant].items()}
        rows.append(
            {
                "variant": variant,
                "colorgan_runs": ours[variant],
                "peer_runs": "fp32 (its default)" if variant == "default" else variant,
                "colorgan_images_per_s": rate["colorgan"],
                "peer_images_per_s": rate["peer"],
                "colorgan_over_peer": rate["colorgan"] / rate["peer"],
                "timed_steps_each": len(times[variant]["peer"]),
            }
        )
        print(f"  peer {variant:<11} colorgan / peer = {rows[-1]['colorgan_over_peer']:.2f}", flush=True)
    return {
        "peer_dir": str(peer_dir),
        "commit": peer_commit(peer_dir),
        "size": spec["size"],
        "batch": spec["batch"],
        "rows": rows,
    }


def peer_commit(peer_dir: Path) -> str | None:
    proc = subprocess.run(["git", "-C", str(peer_dir), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return proc.stdout.strip() or None
