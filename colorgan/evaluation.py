"""Score trained generators against the gray baseline on a test split, image by image."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, ListConfig
from torch import nn
from tqdm import tqdm

from colorgan.checkpoint import load_generator
from colorgan.color import lab_normalized_to_rgb, to_uint8
from colorgan.metrics import colorfulness, l1_ab, psnr_uint8, ssim_uint8
from colorgan.visualize import make_grid, save_image_atomic

log = logging.getLogger(__name__)

# name -> f(pred_rgb_u8, true_rgb_u8, pred_ab, true_ab) -> one value per image
PER_IMAGE_METRICS: dict[str, Callable[..., torch.Tensor]] = {
    "psnr": lambda p, t, pab, tab: psnr_uint8(p, t),
    "ssim": lambda p, t, pab, tab: ssim_uint8(p, t),
    "l1_ab": lambda p, t, pab, tab: l1_ab(pab, tab),
    "colorfulness": lambda p, t, pab, tab: colorfulness(p),
}


@dataclass
class Candidate:
    """A colorizer under test: a trained generator, or ``None`` for the gray baseline (ab = 0)."""

    name: str
    generator: nn.Module | None

    def predict_ab(self, L: torch.Tensor) -> torch.Tensor:
        if self.generator is None:
            return torch.zeros((L.shape[0], 2, *L.shape[2:]), device=L.device)
        return self.generator(L).float()


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def checkpoint_label(path: str | Path) -> str:
    """A short readable name: ``<run folder>/<file stem>``."""
    path = Path(path)
    run = path.parent.parent.name if path.parent.name == "checkpoints" else path.parent.name
    return f"{run}/{path.stem}" if run else path.stem


def as_path_list(value: Any) -> list[str]:
    if value is None:
        raise ValueError("ckpt_path is required: python evaluate.py ckpt_path=PATH (or ckpt_path=[A,B])")
    return [str(v) for v in value] if isinstance(value, (list, tuple, ListConfig)) else [str(value)]


def format_table(results: dict[str, dict[str, float]], truth_cf: float) -> str:
    """A plain-text table: one row per candidate, one column per metric."""
    metrics = list(next(iter(results.values())))
    width = max(len(n) for n in results) + 2
    lines = [f"{'model':<{width}}" + "".join(f"{m:>14}" for m in metrics)]
    for name, row in results.items():
        lines.append(f"{name:<{width}}" + "".join(f"{row[m]:>14.4f}" for m in metrics))
    lines.append(f"{'ground truth':<{width}}" + f"{'colorfulness':>14} = {truth_cf:.4f}")
    return "\n".join(lines)


@torch.inference_mode()
def run_evaluation(
    candidates: list[Candidate],
    datamodule: Any,
    device: torch.device,
    limit_batches: int | None = None,
    num_samples: int = 8,
) -> dict[str, Any]:
    """Per-image metrics of every candidate over the data module's test split."""
    datamodule.prepare_data()
    datamodule.setup("test")
    values: dict[str, dict[str, list[torch.Tensor]]] = {c.name: defaultdict(list) for c in candidates}
    truth_cf: list[torch.Tensor] = []
    samples: dict[str, torch.Tensor] = {}
    loader = datamodule.test_dataloader()
    total = len(loader) if limit_batches is None else min(limit_batches, len(loader))
    for i, batch in enumerate(tqdm(loader, total=total, desc="evaluating", unit="batch")):
        if limit_batches is not None and i >= limit_batches:
            break
        batch = datamodule.on_after_batch_transfer({k: v.to(device) for k, v in batch.items()}, 0)
        L, true_ab, true_u8 = batch["L"], batch["ab"], batch["rgb"]
        truth_cf.append(colorfulness(true_u8).cpu())
        for cand in candidates:
            pred_ab = cand.predict_ab(L)
            pred_u8 = to_uint8(lab_normalized_to_rgb(L, pred_ab))
            for name, fn in PER_IMAGE_METRICS.items():
                values[cand.name][name].append(fn(pred_u8, true_u8, pred_ab, true_ab).float().cpu())
            if i == 0:
                samples[cand.name] = pred_u8[:num_samples].float().cpu() / 255.0
        if i == 0:
            samples["truth"] = true_u8[:num_samples].float().cpu() / 255.0
    if not truth_cf:
        raise ValueError("the test split is empty: nothing to evaluate")
    results = {name: {metric: torch.cat(v).mean().item() for metric, v in per.items()} for name, per in values.items()}
    return {
        "num_images": int(sum(len(t) for t in truth_cf)),
        "truth_colorfulness": torch.cat(truth_cf).mean().item(),
        "results": results,
        "samples": samples,
    }


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate ``cfg.ckpt_path`` (one path or a list) and the gray baseline; write the report."""
    device = pick_device(cfg.get("device", "auto"))
    candidates = [Candidate("gray", None)]
    for path in as_path_list(cfg.get("ckpt_path")):
        generator, hparams = load_generator(path, device)
        trained_size = hparams.get("generator", {}).get("image_size")
        if trained_size and trained_size != cfg.data.image_size:
            log.warning("%s was trained at %s px but data.image_size=%s", path, trained_size, cfg.data.image_size)
        candidates.append(Candidate(checkpoint_label(path), generator))

    datamodule = hydra.utils.instantiate(cfg.data)
    out = run_evaluation(candidates, datamodule, device, cfg.get("limit_batches"), cfg.get("num_samples", 8))
    output_dir = Path(cfg.paths.output_dir)
    grid = make_grid(
        [("gray", out["samples"]["gray"])]
        + [(c.name.split("/")[-1] if len(candidates) == 2 else c.name, out["samples"][c.name]) for c in candidates[1:]]
        + [("truth", out["samples"]["truth"])]
    )
    grid_path = save_image_atomic(grid, output_dir / "samples.png")
    report = {
        "checkpoints": as_path_list(cfg.get("ckpt_path")),
        "data": cfg.data.get("_target_"),
        "split": "test",
        "num_images": out["num_images"],
        "protocol": {
            "psnr": "mean over images of per-image PSNR (dB) on RGB quantised to uint8, peak 255, capped at 100",
            "ssim": "mean per-image SSIM on uint8 RGB scaled to [0, 1], Gaussian window 11, sigma 1.5",
            "l1_ab": "mean |ab_pred - ab_true| in normalised units (ab / 110)",
            "colorfulness": "Hasler and Suesstrunk 2003, mean over images, 0-255 scale",
            "resize": f"test images at data.image_size={cfg.data.image_size} (CIFAR-10 native 32 x 32)",
        },
        "ground_truth": {"colorfulness": out["truth_colorfulness"]},
        "models": out["results"],
        "grid": str(grid_path),
    }
    (output_dir / "metrics.json").write_text(json.dumps(report, indent=2))
    table = format_table(out["results"], out["truth_colorfulness"])
    print(f"\n{out['num_images']} test images\n{table}\n\nwritten to {output_dir / 'metrics.json'}")
    return report
