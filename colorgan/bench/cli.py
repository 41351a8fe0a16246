"""Command line of the benchmark: parse the options, run the chosen parts in order, write the results."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from colorgan.bench.common import ROOT, hardware
from colorgan.bench.data import part_data
from colorgan.bench.default_precision import part_default_precision
from colorgan.bench.epoch import part_epoch
from colorgan.bench.infer import part_infer
from colorgan.bench.lab import part_lab
from colorgan.bench.limit import best_of, part_limit
from colorgan.bench.peer import part_peer
from colorgan.bench.report import write_report
from colorgan.bench.step import STEP_MODELS, STEP_VARIANTS, add_peak_fractions, part_step
from colorgan.runtime import keep_freed_memory, pick_device

USAGE = """Performance benchmark: every figure is a median after warm-up, next to a baseline from the same run.

    python -m colorgan.bench                      # all parts, sizes for a CPU
    python -m colorgan.bench --parts lab,step     # some parts
    python -m colorgan.bench --quick              # tiny settings (what the tests run)

Writes ``bench/results.json`` and ``bench/RESULTS.md`` (hardware, versions, date) and prints the tables.
"""
PARTS = ("limit", "lab", "step", "data", "epoch", "infer")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=USAGE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--models", default=",".join(STEP_MODELS), help="training-step models")
    parser.add_argument("--variants", default=",".join(STEP_VARIANTS), help="training-step variants")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--step-batch", type=int, default=None, help="batch of the timed steps (default: per model)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that everything runs")
    parser.add_argument("--compile-lab", action="store_true", help="also time the torch.compile'd conversion")
    parser.add_argument("--epoch-fraction", type=float, default=0.25, help="share of a CIFAR-10 epoch to run")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--data-dir", default=os.environ.get("COLORGAN_DATA_DIR", str(ROOT / "data")))
    parser.add_argument("--out", default=str(ROOT / "bench"))
    parser.add_argument(
        "--peer-dir",
        type=Path,
        default=None,
        help="a checkout of junyanz/pytorch-CycleGAN-and-pix2pix: also time its colorization step against ours",
    )
    args = parser.parse_args(argv)
    keep_freed_memory()  # as train.py does

    device = pick_device(args.device)
    parts = [p for p in args.parts.split(",") if p]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s) {sorted(unknown)}; choose from {','.join(PARTS)}")
    repeats = 2 if args.quick else args.repeats
    data_dir = Path(args.data_dir).expanduser() if args.data_dir else None
    results: dict[str, Any] = {
        "hardware": hardware(device),
        "command": "python -m colorgan.bench " + " ".join(argv or sys.argv[1:]),
        "default_precision": part_default_precision(device),  # about a second on a CPU
    }
    if "limit" in parts:
        results["limit"] = part_limit(device, args.quick, repeats)
    if "lab" in parts:
        results["lab"] = part_lab(device, args.quick, repeats, args.compile_lab)
    if "step" in parts:
        models = ["cifar_unet32"] if args.quick else args.models.split(",")
        variants = ["fp32", "channels_last"] if args.quick else args.variants.split(",")
        results["step"] = part_step(device, args.quick, repeats, models, variants, args.step_batch)
        if "limit" in parts:  # again after the long step part: the fractions use the better of the two
            results["limit_measurements"] = [results["limit"], part_limit(device, args.quick, repeats)]
            results["limit"] = best_of(*results["limit_measurements"])
        add_peak_fractions(results["step"], results.get("limit", {}))
    if "data" in parts:
        results["data"] = part_data(device, args.quick, data_dir, args.workers, results.get("step", []), repeats)
    if args.peer_dir is not None:
        if not (args.peer_dir / "models" / "colorization_model.py").is_file():
            parser.error(f"--peer-dir {args.peer_dir} is not a pytorch-CycleGAN-and-pix2pix checkout")
        results["peer"] = part_peer(args.peer_dir.expanduser(), args.quick, repeats if not args.quick else 1)
    if "epoch" in parts:
        results["epoch"] = part_epoch(device, args.quick, data_dir, args.epoch_fraction, results.get("step", []))
    if "infer" in parts:
        results["infer"] = part_infer(device, args.quick, repeats)
    write_report(results, Path(args.out))
    return results
