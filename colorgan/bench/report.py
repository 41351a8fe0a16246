"""Writes the results: ``results.json`` and ``RESULTS.md``, one Markdown section per part, also printed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from colorgan.bench.default_precision import default_precision_rows, default_precision_text
from colorgan.files import write_text_atomic
from colorgan.markdown import markdown_table
from colorgan.precision import BF16_MIN_SPEEDUP


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return "" if value is None else str(value)


def table(rows: list[dict[str, Any]]) -> str:
    """Rows of dicts as a Markdown table; the columns are every key any row has, in order of appearance."""
    keys = list(dict.fromkeys(k for row in rows for k in row))
    return markdown_table(keys, [[fmt(row.get(k)) for k in keys] for row in rows])


def limit_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    if not results.get("limit"):
        return []
    measured = results.get("limit_measurements", [])
    when = ["before the steps", "after the steps"]
    return [{"measured": w, **m} for w, m in zip(when, measured)] + [{"measured": "used (best)", **results["limit"]}]


def shards_summary(rows: list[dict[str, Any]]) -> list[str]:
    """One sentence per worker count: how much faster prepared shards feed the step than the folder loader."""
    lines = []
    for row in (r for r in rows if r["data"].startswith("shards")):
        workers = row["data"].split(", ")[1]
        per_worker = " (per worker: one process, one thread)" if workers == "0 workers" else ""
        lines.append(
            f"- {row['source']}, {workers}{per_worker}: shards deliver **{row['vs_folder_rgb']:.2f}x** the folder "
            f"loader's images/s as uint8 RGB on the device, {row['vs_folder_lab']:.2f}x with the Lab conversion."
        )
    return ["## Shards against the folder loader (same photos, same workers)", "", *lines, ""] if lines else []


def peer_section(peer: dict[str, Any] | None) -> list[str]:
    if not peer:
        return []
    commit = f" at commit {peer['commit']}" if peer.get("commit") else ""
    return [
        "## colorgan against the official pix2pix (`--model colorization`, CPU)",
        "",
        f"D + G step of its `optimize_parameters` ({peer['peer_dir']}{commit}; netG unet_256, PatchGAN, options "
        f"from its own parser) against colorgan's, batch {peer['batch']} at {peer['size']} x {peer['size']}, "
        "timed in interleaved rounds. The peer runs fp32 NCHW by default; its bf16-mixed row is its step under "
        "`torch.autocast(bfloat16)`, which is what Lightning's bf16-mixed does for colorgan.",
        "",
        table(peer["rows"]),
    ]


def write_report(results: dict[str, Any], out_dir: Path) -> None:
    write_text_atomic(out_dir / "results.json", json.dumps(results, indent=2))
    hw = results["hardware"]
    md = [
        "# colorgan benchmark",
        "",
        f"{hw['date']} · {hw.get('gpu') or hw['cpu']} · {hw['cpu_threads']} threads · torch {hw['torch']} · "
        f"lightning {hw['lightning']} · `{results['command']}`",
        "",
        "Every figure is a median over repeats after warm-up; ratios are against the baseline measured in the same "
        "run. Training-step variants are timed in interleaved rounds, so that the drift of a shared machine "
        "falls on all of them alike.",
        "",
    ]
    sections = [
        ("Device limit (GFLOP/s; measured before and after the steps; fractions use the best)", limit_rows(results)),
        (
            "Lab conversion (baseline: scikit-image per image, as pix2pix's colorization dataset)",
            results.get("lab", []),
        ),
        ("Training step, D + G (LightningModule code path)", results.get("step", [])),
        (
            "Data delivery (images/s handed to the step: `images_per_s` with the Lab conversion, "
            "`rgb_images_per_s` the uint8 RGB on the device before it; `vs_folder_*`: shards / folder loader "
            "with the same workers on the same photos)",
            results.get("data", []),
        ),
        ("Whole epoch through train.py", [results["epoch"]] if results.get("epoch") else []),
        ("Colorizing a photo", results.get("infer", [])),
    ]
    if results.get("default_precision"):
        choice = results["default_precision"]
        md += [
            "## Default precision (`trainer.precision=auto`, chosen by a short measurement on this machine)",
            "",
            default_precision_text(choice),
            "",
        ]
        if choice.get("seconds"):
            md += [
                "The micro-benchmark is the best of 3 interleaved forward + backward passes of a small stack of "
                "the U-Net's middle layers; bf16-mixed is chosen when it is at least "
                f"{BF16_MIN_SPEEDUP:.2f}x as fast as fp32 in the model's memory format.",
                "",
            ]
        rows = default_precision_rows(choice, results.get("step", []))
        md += [table(rows)] if rows else []
    for title, rows in sections:
        if rows:
            md += [f"## {title}", "", table(rows)]
    md += shards_summary(results.get("data", [])) + peer_section(results.get("peer"))
    text = "\n".join(md)
    write_text_atomic(out_dir / "RESULTS.md", text)
    print(text)
