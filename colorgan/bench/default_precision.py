"""The precision part, run every time: what ``trainer.precision=auto`` chooses here, and the defaults' step variant."""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import OmegaConf

from colorgan.bench.common import ROOT, accelerator
from colorgan.precision import CANDIDATES, choose_precision, resolve_precision


def default_channels_last() -> bool:
    return bool(OmegaConf.load(ROOT / "conf" / "model" / "pix2pix.yaml").get("channels_last", False))


def default_step_variant(device: torch.device) -> str:
    """The step variant ``train.py`` runs with the shipped defaults (precision auto, model.channels_last)."""
    channels_last = default_channels_last()
    precision = resolve_precision("auto", accelerator(device), channels_last=channels_last)
    name = "fp32" if precision == "32-true" else precision
    if channels_last:
        name = "channels_last" if name == "fp32" else f"{name}+channels_last"
    return name


def part_default_precision(device: torch.device, **cpu_kwargs: Any) -> dict[str, Any]:
    """What ``trainer.precision=auto`` chooses here and the figures why, measured afresh (which also
    refreshes the cache ``train.py`` reads)."""
    name = accelerator(device)
    kwargs = {"remeasure": True, **cpu_kwargs} if name == "cpu" else {}
    choice = choose_precision(name, channels_last=default_channels_last(), **kwargs)
    return choice.as_dict()


def default_precision_rows(choice: dict[str, Any], step_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The micro-benchmark's figures per candidate and, where the step part timed both precisions in
    the model's memory format, whether the real D + G steps agree with the choice."""
    seconds = choice.get("seconds") or {}
    rows: list[dict[str, Any]] = []
    for name, _, channels_last in CANDIDATES:
        if name in seconds:
            fp32 = seconds.get("channels_last" if channels_last else "fp32")
            rows.append(
                {
                    "timed": "micro-benchmark (auto's measurement)",
                    "variant": name,
                    "ms_per_pass": seconds[name] * 1e3,
                    "speed_vs_fp32_same_format": fp32 / seconds[name] if fp32 else None,
                }
            )
    channels_last = default_channels_last()
    fp32_name, bf16_name = ("channels_last", "bf16-mixed+channels_last") if channels_last else ("fp32", "bf16-mixed")
    for model in dict.fromkeys(r["model"] for r in step_rows):
        rates = {r["variant"]: r.get("images_per_s") for r in step_rows if r["model"] == model}
        if rates.get(fp32_name) and rates.get(bf16_name):
            rows.append(
                {
                    "timed": f"D + G step, {model} (images/s)",
                    "variant": bf16_name,
                    "ms_per_pass": None,
                    "speed_vs_fp32_same_format": rates[bf16_name] / rates[fp32_name],
                }
            )
    return rows


def default_precision_text(choice: dict[str, Any]) -> str:
    source = {
        "measured": f"measured in this run, {choice.get('measured_at')}",
        "cache": f"cached from {choice.get('measured_at')}",
    }.get(choice["source"], choice["source"])
    return f"`trainer.precision=auto` -> **{choice['precision']}**: {choice['reason']} ({source})."
