"""After a Hydra multirun: one table and one plot of every job's overrides and final metrics.

``SweepSummary`` is a Hydra callback (``conf/hydra/default.yaml``). When the sweep ends it reads
each job folder's ``.hydra/overrides.yaml`` and ``summary.json`` (written by training, or by
``colorgan.runs.launch.run_task`` for a failed job) and writes into the sweep folder:

* ``sweep_summary.csv``: one row per job, every override and metric;
* ``sweep_summary.md``: the same for reading, with only the overrides that differ between jobs;
* ``sweep_summary.png``: each metric against each swept numeric parameter (e.g. ``lambda_l1``).

Failed and unfinished jobs are rows too, with their status and error, never a crash.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from colorgan.files import replacing, write_atomic, write_text_atomic
from colorgan.markdown import markdown_table

log = logging.getLogger(__name__)

DEFAULT_METRICS = ("val/l1_ab", "val/psnr", "val/psnr_gain", "val/realism")


@dataclass
class Job:
    """One job folder of a sweep."""

    num: int
    folder: Path
    overrides: dict[str, str]
    status: str = "missing"  # completed | failed | missing (no summary.json: killed or still running)
    metrics: dict[str, float] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def error(self) -> str:
        return str(self.summary.get("error", "") or "")

    @property
    def short_error(self) -> str:
        """The error on one line, for the markdown table and the log."""
        text = " ".join(self.error.split())
        return text if len(text) <= 300 else text[:297] + "..."


def parse_value(text: str) -> Any:
    """An override's value as a number when it is one (``10`` -> 10, ``1e-4`` -> 0.0001), else the text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _read_overrides(folder: Path) -> dict[str, str]:
    items = (str(item).partition("=") for item in OmegaConf.load(folder / ".hydra" / "overrides.yaml") or [])
    return {key.lstrip("+~"): value for key, _, value in items}


def _job_number(folder: Path, fallback: int) -> int:
    hydra_yaml = folder / ".hydra" / "hydra.yaml"
    if hydra_yaml.is_file():
        num = OmegaConf.select(OmegaConf.load(hydra_yaml), "hydra.job.num", default=None)
        if isinstance(num, int):
            return num
    return int(folder.name) if folder.name.isdigit() else fallback


def collect_jobs(sweep_dir: str | Path) -> list[Job]:
    """Every job folder under ``sweep_dir`` (any depth), in job order."""
    jobs = []
    for i, marker in enumerate(sorted(Path(sweep_dir).glob("**/.hydra/overrides.yaml"))):
        folder = marker.parent.parent
        job = Job(num=_job_number(folder, i), folder=folder, overrides=_read_overrides(folder))
        summary_path = folder / "summary.json"
        if summary_path.is_file():
            try:
                job.summary = json.loads(summary_path.read_text())
            except json.JSONDecodeError as err:
                job.summary = {"status": "failed", "error": f"unreadable summary.json: {err}"}
            job.status = str(job.summary.get("status", "completed"))
            raw = job.summary.get("metrics") or {}
            job.metrics = {k: float(v) for k, v in raw.items() if isinstance(v, int | float)}
        jobs.append(job)
    return sorted(jobs, key=lambda j: j.num)


def varied_keys(jobs: Sequence[Job]) -> list[str]:
    """Override keys whose value differs between jobs (or is missing from some), in first-seen order."""
    keys = dict.fromkeys(k for job in jobs for k in job.overrides)
    return [k for k in keys if len({job.overrides.get(k) for job in jobs}) > 1]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def write_tables(sweep_dir: Path, jobs: Sequence[Job], metrics: Sequence[str]) -> tuple[Path, Path]:
    """sweep_summary.csv (all overrides) and sweep_summary.md (varied overrides only)."""
    all_keys = list(dict.fromkeys(k for job in jobs for k in job.overrides))
    extra = ["epochs", "wall_time_s"]
    csv_path = sweep_dir / "sweep_summary.csv"
    with replacing(csv_path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["job", "status", *all_keys, *metrics, *extra, "folder", "error"])
        for job in jobs:
            writer.writerow(
                [
                    job.num,
                    job.status,
                    *(job.overrides.get(k, "") for k in all_keys),
                    *(job.metrics.get(m, "") for m in metrics),
                    *(job.summary.get(e, "") for e in extra),
                    job.folder.relative_to(sweep_dir) if job.folder.is_relative_to(sweep_dir) else job.folder,
                    job.error,
                ]
            )

    varied = varied_keys(jobs)
    common = [f"{k}={v}" for k, v in (jobs[0].overrides.items() if jobs else []) if k not in varied]
    done = sum(job.status == "completed" for job in jobs)
    rows = [
        [job.num, job.status, *(job.overrides.get(k, "") for k in varied)]
        + [_fmt(job.metrics.get(m)) for m in metrics]
        + [_fmt(job.summary.get("epochs"))]
        for job in jobs
    ]
    text = (
        f"# Sweep summary: {sweep_dir.name}\n\n{done} of {len(jobs)} jobs completed."
        + (f" Common overrides: `{' '.join(common)}`" if common else "")
        + "\n\n"
        + markdown_table(["job", "status", *varied, *metrics, "epochs"], rows)
    )
    failed = [job for job in jobs if job.status != "completed"]
    if failed:
        text += "\n## Jobs that did not complete\n\n" + "".join(
            f"* job {j.num} ({j.status}): {j.short_error or 'no summary.json'} ({j.folder.name})\n" for j in failed
        )
    return csv_path, write_text_atomic(sweep_dir / "sweep_summary.md", text)


def numeric_varied_keys(jobs: Sequence[Job]) -> list[str]:
    """Varied overrides that are finite numbers in every completed job: the plot's x axes."""
    done = [job for job in jobs if job.status == "completed"]
    keys = []
    for key in varied_keys(jobs):
        values = [parse_value(job.overrides.get(key, "")) for job in done]
        if values and all(isinstance(v, int | float) and math.isfinite(v) for v in values):
            keys.append(key)
    return keys


def write_plot(sweep_dir: Path, jobs: Sequence[Job], metrics: Sequence[str]) -> Path | None:
    """sweep_summary.png: rows = swept numeric parameters, columns = metrics; completed jobs only."""
    done = [job for job in jobs if job.status == "completed"]
    xs = numeric_varied_keys(jobs)
    shown = [m for m in metrics if any(m in job.metrics for job in done)]
    if not done or not xs or not shown:
        log.info("sweep summary: no numeric swept parameter with finished jobs to plot")
        return None
    from matplotlib.figure import Figure  # a bare Figure renders with Agg: no display, no global state

    fig = Figure(figsize=(4 * len(shown), 3.2 * len(xs)))
    axes = fig.subplots(len(xs), len(shown), squeeze=False)
    for row, key in enumerate(xs):
        # one line (or colour) per value of the categorical parameters; numeric ones are scattered
        others = [k for k in varied_keys(done) if k != key and k not in xs]
        groups: dict[str, list[Job]] = {}
        for job in done:
            label = ", ".join(f"{k}={job.overrides.get(k, '')}" for k in others)
            groups.setdefault(label, []).append(job)
        values = [parse_value(job.overrides[key]) for job in done]
        for col, metric in enumerate(shown):
            ax = axes[row][col]
            for label, members in groups.items():
                points = sorted(
                    (parse_value(j.overrides[key]), j.metrics[metric]) for j in members if metric in j.metrics
                )
                if points:
                    ax.plot(*zip(*points), "o-" if len(xs) == 1 else "o", label=label or None)
            if min(values) > 0 and max(values) / min(values) >= 20:
                ax.set_xscale("log")
            ax.set_xlabel(key)
            ax.tick_params(axis="x", labelrotation=30)
            ax.set_ylabel(metric)
            ax.grid(alpha=0.3)
            if others and len(groups) <= 8:
                ax.legend(fontsize=7)
    fig.suptitle(f"{sweep_dir.name}: final validation metrics ({len(done)} of {len(jobs)} jobs completed)")
    fig.tight_layout()
    return write_atomic(sweep_dir / "sweep_summary.png", lambda tmp: fig.savefig(tmp, dpi=100))


def summarize_sweep(sweep_dir: str | Path, metrics: Sequence[str] = DEFAULT_METRICS) -> list[Job]:
    """Write the table and the plot for ``sweep_dir``; return the jobs."""
    sweep_dir = Path(sweep_dir)
    jobs = collect_jobs(sweep_dir)
    csv_path, md_path = write_tables(sweep_dir, jobs, metrics)
    plot = write_plot(sweep_dir, jobs, metrics)
    log.info("sweep summary: %s, %s%s", csv_path, md_path, f", {plot}" if plot else "")
    return jobs


class SweepSummary(Callback):
    """Hydra callback: summarize the sweep once all its jobs have returned."""

    def __init__(self, metrics: Sequence[str] = DEFAULT_METRICS, fail_on_failed_jobs: bool = True) -> None:
        self.metrics = list(metrics)
        self.fail_on_failed_jobs = fail_on_failed_jobs

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():
            return
        jobs = summarize_sweep(sweep_dir, self.metrics)
        failed = [job for job in jobs if job.status != "completed"]
        if failed:
            listing = "; ".join(f"job {j.num}: {j.short_error or j.status}" for j in failed)
            log.error("%d of %d jobs did not complete: %s", len(failed), len(jobs), listing)
            if self.fail_on_failed_jobs:  # Hydra turns a callback's exceptions into warnings; exit non-zero
                summary = sweep_dir / "sweep_summary.md"
                raise SystemExit(f"{len(failed)} of {len(jobs)} jobs did not complete; see {summary}")
