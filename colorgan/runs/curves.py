"""Training curves of finished or running runs, from their ``csv/metrics.csv``, side by side.

``python -m colorgan.runs.curves RUN_DIR [RUN_DIR ...] --out curves.png`` plots each validation metric
against the epoch, one panel per metric, one line per run (a run's folder name is its label), so
an L1 stage and the GAN stage that continues from it can be read as one story.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from pathlib import Path

from colorgan.errors import fail
from colorgan.files import write_atomic

DEFAULT_METRICS = ("val/psnr_gain", "val/delta_e", "val/colorfulness", "val/realism")


def read_epoch_metrics(run_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """metric -> [(epoch, value)] from a run's csv/metrics.csv (one row per epoch for val/ metrics)."""
    path = Path(run_dir) / "csv" / "metrics.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: pass a run folder written by train.py (logger=csv, the default)")
    series: dict[str, list[tuple[int, float]]] = {}
    with path.open() as f:
        for row in csv.DictReader(f):
            for name, value in row.items():
                if name and name.startswith("val/") and value not in ("", None):
                    series.setdefault(name, []).append((int(float(row["epoch"])), float(value)))
    return series


def plot_runs(run_dirs: Sequence[str | Path], out: str | Path, metrics: Sequence[str] = DEFAULT_METRICS) -> Path:
    from matplotlib.figure import Figure  # a bare Figure renders with Agg: no display, no global state

    runs = {Path(d).name: read_epoch_metrics(d) for d in run_dirs}
    shown = [m for m in metrics if any(m in series for series in runs.values())]
    if not shown:
        raise ValueError(f"none of {list(metrics)} is in the runs' metrics.csv")
    fig = Figure(figsize=(4 * len(shown), 3.2))
    axes = fig.subplots(1, len(shown), squeeze=False)
    for ax, metric in zip(axes[0], shown):
        for index, (label, series) in enumerate(runs.items()):
            if metric in series:  # one colour per run in every panel, even where a run lacks a metric
                epochs, values = zip(*series[metric])
                ax.plot([e + 1 for e in epochs], values, marker="o", label=label, color=f"C{index}")
        if metric == "val/psnr_gain":
            ax.axhline(0.0, color="gray", linestyle="--", linewidth=1)  # the gray baseline
        ax.set_title(metric)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    handles = {h.get_label(): h for ax in axes[0] for h in ax.get_lines() if not h.get_label().startswith("_")}
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=len(handles), fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return write_atomic(out, lambda tmp: fig.savefig(tmp, dpi=90))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m colorgan.runs.curves", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders (each with csv/metrics.csv)")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS), help="val/ metrics to plot")
    args = parser.parse_args(argv)
    try:
        print(plot_runs(args.runs, args.out, args.metrics))
    except (FileNotFoundError, ValueError) as err:
        return fail("python -m colorgan.runs.curves", err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
