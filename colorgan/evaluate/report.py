"""Human-readable evaluation output: a console table, report.md and a per-class plot."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from colorgan.files import write_atomic, write_text_atomic
from colorgan.markdown import markdown_table

# arrows say which direction is better; colourfulness has none (closest to the truth's is best)
HIGHER_IS_BETTER = {"psnr", "ssim", "probe_accuracy"}
LOWER_IS_BETTER = {"l1_ab", "delta_e", "delta_cf", "lpips", "fid", "fid_probe"}
PLOT_METRICS = ("psnr", "delta_e", "probe_accuracy")


def _arrow(metric: str) -> str:
    return " ↑" if metric in HIGHER_IS_BETTER else " ↓" if metric in LOWER_IS_BETTER else ""


def _fmt(value: float | None) -> str:
    return "—" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.4f}"


def format_table(results: dict[str, dict[str, float]], ground_truth: dict[str, float]) -> str:
    """A plain-text table: one row per candidate, one column per metric, then the ground truth's row."""
    metrics = list(next(iter(results.values())))
    width = max(len(n) for n in [*results, "ground truth"]) + 2
    col = max(14, *(len(m) + 2 for m in metrics))
    lines = [f"{'model':<{width}}" + "".join(f"{m:>{col}}" for m in metrics)]
    for name, row in {**results, "ground truth": ground_truth}.items():
        lines.append(f"{name:<{width}}" + "".join(f"{_fmt(row.get(m)):>{col}}" for m in metrics))
    return "\n".join(lines)


def skipped_sentence(skipped: dict[str, Any]) -> str:
    """How many unreadable files the test split skipped: they are in no metric."""
    count = skipped["count"]
    files = "image file of the test split was" if count == 1 else "image files of the test split were"
    return f"{count} unreadable {files} skipped (not scored)"


def skipped_summary(skipped: dict[str, Any], report_path: str | Path, shown: int = 3) -> str:
    """For the console: the count, where each file and its reason are listed, the first few reasons."""
    lines = [f"{skipped_sentence(skipped)}; each file and why: {report_path}"]
    lines += [f"  {reason}" for reason in skipped["reasons"][:shown]]
    if skipped["count"] > shown:
        lines.append(f"  ... and {skipped['count'] - shown} more")
    return "\n".join(lines)


def _skipped_section(skipped: dict[str, Any]) -> str:
    reasons = skipped["reasons"]
    unlisted = skipped["count"] - len(reasons)
    more = [f"- ... and {unlisted} more (the evaluation log names each one)"] if unlisted else []
    items = "\n".join([*(f"- {reason}" for reason in reasons), *more])
    return f"## Skipped images\n\n{skipped_sentence(skipped)}:\n\n{items}"


def _overall_table(report: dict[str, Any]) -> str:
    models = report["models"]
    metrics = list(next(iter(models.values())))
    rows = [[f"`{name}`", *(_fmt(row.get(m)) for m in metrics)] for name, row in models.items()]
    rows.append(["ground truth", *(_fmt(report["ground_truth"].get(m)) for m in metrics)])
    return markdown_table(["model", *(m + _arrow(m) for m in metrics)], rows)


def _per_class_tables(per_class: dict[str, Any]) -> list[str]:
    classes, counts = per_class["classes"], per_class["counts"]
    models, truth = per_class["models"], per_class["ground_truth"]
    out = []
    for metric in next(iter(models.values())):
        columns = {f"`{m}`": per[metric] for m, per in models.items()}
        if metric in truth:
            columns["ground truth"] = truth[metric]
        rows = [[name, str(n), *map(_fmt, values)] for name, n, *values in zip(classes, counts, *columns.values())]
        out.append(f"#### {metric}{_arrow(metric)}\n\n" + markdown_table(["class", "images", *columns], rows))
    return out


def plot_per_class(per_class: dict[str, Any], path: str | Path) -> Path:
    """Grouped bars per class, one bar per candidate (and the truth where it has a value)."""
    from matplotlib.figure import Figure  # a bare Figure renders with Agg: no display, no global state

    models, truth = per_class["models"], per_class["ground_truth"]
    available = next(iter(models.values()))
    metrics = [m for m in PLOT_METRICS if m in available] or list(available)[:1]
    classes = per_class["classes"]
    fig = Figure(figsize=(max(8.0, 0.9 * len(classes) + 2), 3.2 * len(metrics)), layout="constrained")
    axes = fig.subplots(len(metrics), 1, squeeze=False)[:, 0]
    for ax, metric in zip(axes, metrics):
        series = [(name, per[metric]) for name, per in models.items()]
        if metric in truth:
            series.append(("ground truth", truth[metric]))
        width = 0.8 / len(series)
        for k, (name, vals) in enumerate(series):
            ax.bar([i + (k - (len(series) - 1) / 2) * width for i in range(len(classes))], vals, width, label=name)
        ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
        ax.set_ylabel(metric + _arrow(metric))
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
        if metric == "psnr":
            low = min(min(v) for _, v in series)
            ax.set_ylim(bottom=max(0.0, math.floor(low) - 2))
    axes[0].set_title("per class, test split")
    return write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=110))


def render_markdown(report: dict[str, Any], plot_name: str | None) -> str:
    """report.md: what was scored and how, and what was left out and why."""
    parts = [
        "# Colorization evaluation",
        f"{report['num_images']} images ({report['split']}) of `{report['data']}`, scored in "
        f"{report['timing']['scoring_seconds']:.1f} s on {report['timing']['device']} "
        f"({report['timing']['images_per_second']:.0f} images/s per candidate set).",
        "Checkpoints:\n\n" + "\n".join(f"- `{p}`" for p in report["checkpoints"]),
        *(f"## Warning\n\n{warning[0].upper()}{warning[1:]}." for warning in report.get("warnings", [])),
        *([_skipped_section(report["skipped_images"])] if (report.get("skipped_images") or {}).get("count") else []),
        "## Results\n\n`gray` is the baseline that keeps L and sets ab = 0. "
        "↑ higher is better, ↓ lower is better; colourfulness is best when closest to the ground truth's.\n\n"
        + _overall_table(report),
    ]
    if report["skipped"]:
        parts.append("## Not computed\n\n" + "\n".join(f"- {reason}" for reason in report["skipped"].values()))
    probe = report.get("probe")
    if probe:
        trained = probe.get("trained") or {}
        rows = [[f"`{name}`", _fmt(acc)] for name, acc in probe["accuracy"].items()]
        parts.append(
            "## Semantic test (CIFAR-10 probe)\n\n"
            f"A classifier trained on real colour images (`{probe['weights']}`; its own test accuracy at training: "
            f"{_fmt(trained.get('test_accuracy'))} on colour, {_fmt(trained.get('test_accuracy_gray'))} on gray) "
            "classifies each candidate's images: the closer to the ground truth's accuracy, the more the colours "
            f"help recognition. {probe['note']}.\n\n" + markdown_table(["images", "probe accuracy ↑"], rows)
        )
    if report.get("per_class"):
        plot = f"![per-class results]({plot_name})\n\n" if plot_name else ""
        parts.append("## Per class\n\n" + plot + "\n".join(_per_class_tables(report["per_class"])))
    if report["backends"]:
        parts.append("## Backends\n\n" + "\n".join(f"- {k}: {v}" for k, v in report["backends"].items()))
    parts.append("## Protocol\n\n" + "\n".join(f"- **{k}**: {v}" for k, v in report["protocol"].items()))
    return "\n\n".join(part.rstrip("\n") for part in parts) + "\n"  # tables end in a newline of their own


def write_report(report: dict[str, Any], output_dir: str | Path) -> dict[str, str]:
    """Write report.md (and per_class.png when there are classes) atomically; return their paths."""
    output_dir = Path(output_dir)
    files: dict[str, str] = {}
    plot_name = None
    if report.get("per_class"):
        files["plot"] = str(plot_per_class(report["per_class"], output_dir / "per_class.png"))
        plot_name = "per_class.png"
    files["report"] = str(write_text_atomic(output_dir / "report.md", render_markdown(report, plot_name)))
    return files
