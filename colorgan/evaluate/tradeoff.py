"""How right against how colourful: PSNR and probe gap recovered against colourfulness, from evaluate.py reports.

``python -m colorgan.evaluate.tradeoff metrics.json [metrics.json ...] --out tradeoff.png`` puts every scored
model of the reports on two panels sharing the colourfulness axis: PSNR (how close to this image's
colours) and the probe gap recovered (how much the colours help a classifier, see
:func:`colorgan.evaluate.evaluator.add_probe_gap`). The rows of one classification model at several
temperatures (``name@T=...``) are joined into its curve; gray is a point and the truth's colourfulness
a dashed line. Regression models are single points.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from colorgan.errors import fail
from colorgan.files import write_atomic

TEMPERATURE = re.compile(r"^(?P<model>.+)@T=(?P<t>[0-9.]+)$")


def read_points(reports: Sequence[str | Path]) -> tuple[dict[str, list[tuple[float, dict]]], dict, dict]:
    """(model -> [(T or nan, row)], gray's row, the ground truth) from evaluate.py's metrics.json files."""
    models: dict[str, list[tuple[float, dict]]] = {}
    gray, truth = {}, {}
    for report in reports:
        data = json.loads(Path(report).read_text(encoding="utf-8"))
        gray, truth = data["models"]["gray"], data["ground_truth"]
        for name, row in data["models"].items():
            if name == "gray":
                continue
            match = TEMPERATURE.match(name)
            model, t = (match["model"], float(match["t"])) if match else (name, float("nan"))
            models.setdefault(model, []).append((t, row))
    return models, gray, truth


def plot_tradeoff(reports: Sequence[str | Path], out: str | Path, labels: dict[str, str] | None = None) -> Path:
    from matplotlib.figure import Figure  # a bare Figure renders with Agg: no display, no global state

    models, gray, truth = read_points(reports)
    labels = labels or {}
    panels = [("psnr", "PSNR (dB) ↑")]
    if "probe_gap" in gray:
        panels.append(("probe_gap", "probe gap recovered ↑"))
    fig = Figure(figsize=(6.2 * len(panels), 4.6), dpi=110)
    for i, (metric, title) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for model, points in models.items():
            points = sorted(points, key=lambda p: -p[0] if p[0] == p[0] else 0)
            x = [row["colorfulness"] for _, row in points]
            y = [row[metric] for _, row in points]
            line = ax.plot(x, y, "o-" if len(points) > 1 else "s", label=labels.get(model, model))[0]
            for t, row in points:
                if t == t:  # a temperature: label the point with it
                    ax.annotate(
                        f"T={t:g}",
                        (row["colorfulness"], row[metric]),
                        fontsize=7,
                        color=line.get_color(),
                        xytext=(3, 3),
                        textcoords="offset points",
                    )
        ax.plot([gray["colorfulness"]], [gray[metric]], "kx", markersize=9, label="gray (ab = 0)")
        ax.axvline(truth["colorfulness"], color="gray", linestyle="--", linewidth=1, label="truth's colourfulness")
        if metric == "probe_gap":
            ax.axhline(1.0, color="gray", linestyle=":", linewidth=1, label="truth's probe accuracy")
        ax.set_xlabel("colourfulness (Hasler & Süsstrunk) →")
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    out = Path(out)
    suffix = out.suffix.lstrip(".") or "png"
    return write_atomic(out, lambda tmp: fig.savefig(tmp, format=suffix))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m colorgan.evaluate.tradeoff", description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", type=Path, help="evaluate.py's metrics.json files")
    parser.add_argument("--out", type=Path, required=True, help="the figure to write (png, svg, pdf)")
    parser.add_argument("--label", action="append", default=[], metavar="MODEL=TEXT", help="a legend name for MODEL")
    args = parser.parse_args(argv)
    labels = dict(item.split("=", 1) for item in args.label if "=" in item)
    try:
        print(f"wrote {plot_tradeoff(args.reports, args.out, labels)}")
    except (OSError, KeyError, ValueError) as err:
        return fail("python -m colorgan.evaluate.tradeoff", err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
