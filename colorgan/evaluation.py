"""Score trained generators against the gray baseline on a test split, image by image.

Every per-image metric is kept image by image, so overall means and per-class means come from the
same numbers. Metrics that need pretrained networks (FID's Inception, LPIPS's AlexNet, the CIFAR-10
probe) run only when their weights are on disk; otherwise the report says why they were skipped.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn
from tqdm import tqdm

from colorgan.checkpoint import load_generator
from colorgan.color import AB_SCALE
from colorgan.data.datasets import drop_skipped
from colorgan.fid import FeatureStats, FrechetReference, build_inception, find_inception_weights
from colorgan.io import WeightsUnavailable, find_weights
from colorgan.metrics import (
    PER_IMAGE_METRICS,
    Rendered,
    build_lpips,
    colorfulness,
    lpips_backbone_url,
    lpips_per_image,
)
from colorgan.models import set_stochastic_inference
from colorgan.probe import TRAIN_COMMAND, ProbeError, ProbeNet, load_probe
from colorgan.report import format_table, skipped_summary, write_report
from colorgan.visualize import make_grid, save_image_atomic

log = logging.getLogger(__name__)


PROTOCOL = {
    "quantisation": "every candidate is rendered as colorgan-colorize saves it (colorgan.color.render_uint8): L "
    "(from the test image) + predicted ab -> RGB, with the chroma of out-of-gamut pixels lowered until the "
    "lightness is kept -> uint8; all metrics compare these uint8 images with the uint8 ground truth",
    "psnr": "mean over images of per-image PSNR (dB) on uint8 RGB, peak 255, capped at 100",
    "ssim": "mean per-image SSIM on uint8 RGB scaled to [0, 1], Gaussian window 11, sigma 1.5, channels averaged",
    "l1_ab": "mean |ab_pred - ab_true| in normalised units (ab / 110), the training loss's units",
    "delta_e": "CIEDE2000 (kL = kC = kH = 1) between the Lab of the uint8 prediction and of the uint8 truth (D65), "
    "per pixel, mean per image, then mean over images; Lab units",
    "colorfulness": "Hasler and Suesstrunk 2003, per image on uint8 RGB (0-255 scale), mean over images",
    "delta_cf": "|colorfulness(pred) - colorfulness(truth)| per image, mean over images",
    "lpips": "LPIPS v0.1 (linear layers shipped with torchmetrics) on the ImageNet backbone, per image, inputs in "
    "[-1, 1] at the test resolution (no resize), mean over images",
    "fid": "Inception-v3 of the TensorFlow FID (torch-fidelity's port, via torchmetrics), 2048-d pool features of "
    "uint8 RGB resized to 299 x 299 (bilinear) inside the network, each candidate's images against the ground-truth "
    "test images, full split, Frechet distance in float64",
    "fid_probe": "Frechet distance on the CIFAR-10 probe's penultimate features (not comparable to Inception FID)",
    "probe_accuracy": "top-1 accuracy of a CIFAR-10 classifier trained on real colour images, on each candidate's "
    "images (the semantic test of Zhang et al. 2016)",
    "per_class": "the same per-image values averaged within each class label; the count-weighted mean of the "
    "per-class values equals the overall value",
    "diversity_ab": "how much the generator's noise changes its colours: two predictions of each test image with "
    "dropout and noise inputs on (stochastic inference), mean |ab_1 - ab_2| per pixel in Lab units, mean over images",
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

    def diversity(self, L: torch.Tensor) -> torch.Tensor:
        """Mean |ab_1 - ab_2| (Lab units) per image between two stochastic predictions of the same L."""
        modes = {m: m.training for m in self.generator.modules()}
        set_stochastic_inference(self.generator, True)
        try:
            first, second = self.predict_ab(L), self.predict_ab(L)
        finally:
            for module, training in modes.items():
                module.training = training
        return (first - second).abs().flatten(1).mean(dim=1) * AB_SCALE


@dataclass
class Backends:
    """The optional scorers found for this run, and why the others are off."""

    lpips: nn.Module | None = None
    inception: nn.Module | None = None
    probe: ProbeNet | None = None
    probe_info: dict[str, Any] = field(default_factory=dict)
    used: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


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


def _mode(value: Any, key: str) -> str:
    """auto | true | false, however YAML spelled it."""
    text = str(value).lower()
    if text not in ("auto", "true", "false"):
        raise ValueError(f"{key} must be auto, true or false, got {value!r}")
    return text


def _setup(mode: str, key: str, label: str, name: str, backends: Backends, build: Callable[[], str]) -> None:
    """Run ``build`` (it sets one backend up and says what it used), or record why it could not."""
    if mode == "false":
        return
    try:
        backends.used[name] = build()
    except (WeightsUnavailable, ProbeError) as err:
        if mode == "true":  # asked for explicitly: a missing file is an error, not a note
            raise type(err)(f"{key}=true, but {err}") from err
        backends.skipped[name] = f"{label} skipped: {err}"
        log.warning(backends.skipped[name])


def load_backends(ecfg: DictConfig | dict[str, Any], device: torch.device, class_names: list[str] | None) -> Backends:
    """Build FID, LPIPS and the probe from local files; record a reason for each one left out."""
    b = Backends()

    def fid() -> str:
        weights = find_inception_weights(ecfg.get("fid_weights"))
        features = int(ecfg.get("fid_features", 2048))
        b.inception = build_inception(weights, device, features)
        return f"Inception-v3 FID weights {weights}, {features}-d features"

    def lpips() -> str:
        net = ecfg.get("lpips_net", "alex")
        weights = find_weights(ecfg.get("lpips_weights"), "eval.lpips_weights", lpips_backbone_url(net))
        b.lpips = build_lpips(net, weights, device)
        return f"LPIPS v0.1, {net} backbone {weights}"

    def probe() -> str:
        path = ecfg.get("probe_weights")
        if not path:
            raise ProbeError(f"eval.probe_weights is not set; create a probe with: {TRAIN_COMMAND}")
        if not class_names:
            raise ProbeError("this data set has no class labels, which the semantic test needs")
        net, info = load_probe(path, device)
        if list(info.get("class_names", [])) != list(class_names):
            raise ProbeError(f"the probe at {path} classifies {info.get('class_names')}, not this data set's classes")
        b.probe, b.probe_info = net, {"weights": str(path), **info}
        return f"CIFAR-10 probe {path}"

    _setup(_mode(ecfg.get("fid", "auto"), "eval.fid"), "eval.fid", "FID", "fid", b, fid)
    _setup(_mode(ecfg.get("lpips", "auto"), "eval.lpips"), "eval.lpips", "LPIPS", "lpips", b, lpips)
    mode = _mode(ecfg.get("probe", "auto"), "eval.probe")
    _setup(mode, "eval.probe", "probe_accuracy and fid_probe", "probe", b, probe)
    return b


def per_class_means(
    values: dict[str, torch.Tensor], labels: torch.Tensor, class_names: list[str] | None
) -> tuple[list[str], list[int], dict[str, list[float]]]:
    """Mean of each per-image metric within each label present, with the image count per class."""
    present = sorted(int(c) for c in labels.unique())
    names = [class_names[c] if class_names and c < len(class_names) else str(c) for c in present]
    counts = [int((labels == c).sum()) for c in present]
    means = {m: [v[labels == c].double().mean().item() for c in present] for m, v in values.items()}
    return names, counts, means


@torch.inference_mode()
def run_evaluation(
    candidates: list[Candidate],
    datamodule: Any,
    device: torch.device,
    limit_batches: int | None = None,
    num_samples: int = 8,
    backends: Backends | None = None,
    per_class: bool = True,
    diversity: bool = False,
) -> dict[str, Any]:
    """Per-image metrics of every candidate over the data module's test split (and set-level FIDs)."""
    backends = backends or Backends()
    datamodule.prepare_data()
    datamodule.setup("test")
    values: dict[str, dict[str, list[torch.Tensor]]] = {c.name: defaultdict(list) for c in candidates}
    truth_values: dict[str, list[torch.Tensor]] = defaultdict(list)
    labels: list[torch.Tensor] = []
    stats: dict[str, dict[str, FeatureStats]] = {
        "fid": defaultdict(FeatureStats),
        "fid_probe": defaultdict(FeatureStats),
    }
    samples: dict[str, torch.Tensor] = {}
    loader = datamodule.test_dataloader()
    total = len(loader) if limit_batches is None else min(limit_batches, len(loader))
    for i, batch in enumerate(tqdm(loader, total=total, desc="evaluating", unit="batch")):
        if limit_batches is not None and i >= limit_batches:
            break
        batch = drop_skipped(datamodule.on_before_batch_transfer(batch, 0))  # counts unreadable files
        if len(batch["rgb"]) == 0:
            continue
        batch = datamodule.on_after_batch_transfer({k: v.to(device) for k, v in batch.items()}, 0)
        L = batch["L"]
        truth = Rendered(batch["rgb"], batch["ab"])
        labels.append(batch["label"].cpu() if "label" in batch else torch.full((len(L),), -1))
        truth_values["colorfulness"].append(colorfulness(truth.rgb).cpu())
        if backends.probe is not None:
            feats = backends.probe.features(truth.rgb)
            truth_values["probe_accuracy"].append(_correct(backends.probe, feats, batch["label"]))
            stats["fid_probe"]["truth"].update(feats)
        if backends.inception is not None:
            stats["fid"]["truth"].update(backends.inception(truth.rgb))
        for cand in candidates:
            pred_ab = cand.predict_ab(L)
            pred = Rendered.from_lab(L, pred_ab)
            row = values[cand.name]
            for name, fn in PER_IMAGE_METRICS.items():
                row[name].append(fn(pred, truth).float().cpu())
            if diversity:  # gray has no noise: 0
                spread = cand.diversity(L) if cand.generator is not None else torch.zeros(len(L), device=L.device)
                row["diversity_ab"].append(spread.cpu())
            if backends.lpips is not None:
                row["lpips"].append(lpips_per_image(backends.lpips, pred.rgb, truth.rgb).cpu())
            if backends.probe is not None:
                feats = backends.probe.features(pred.rgb)
                row["probe_accuracy"].append(_correct(backends.probe, feats, batch["label"]))
                stats["fid_probe"][cand.name].update(feats)
            if backends.inception is not None:
                stats["fid"][cand.name].update(backends.inception(pred.rgb))
            if "truth" not in samples:
                samples[cand.name] = pred.rgb[:num_samples].float().cpu() / 255.0
        if "truth" not in samples:
            samples["truth"] = truth.rgb[:num_samples].float().cpu() / 255.0
    if not labels:
        raise ValueError("the test split is empty: nothing to evaluate")
    per_image = {c: {m: torch.cat(v) for m, v in per.items()} for c, per in values.items()}
    truth_per_image = {m: torch.cat(v) for m, v in truth_values.items()}
    results = {c: {m: v.double().mean().item() for m, v in per.items()} for c, per in per_image.items()}
    for metric, by_set in stats.items():
        if "truth" in by_set:
            reference = FrechetReference(by_set["truth"])
            for cand in candidates:
                results[cand.name][metric] = reference.distance(by_set[cand.name])
    all_labels = torch.cat(labels)
    out: dict[str, Any] = {
        "num_images": len(all_labels),
        "truth_colorfulness": truth_per_image["colorfulness"].double().mean().item(),
        "ground_truth": {m: v.double().mean().item() for m, v in truth_per_image.items()},
        "results": results,
        "samples": samples,
        "per_class": None,
    }
    if per_class and bool((all_labels >= 0).all()):
        class_names = list(getattr(datamodule, "class_names", None) or []) or None
        names, counts, _ = per_class_means(truth_per_image, all_labels, class_names)
        out["per_class"] = {
            "classes": names,
            "counts": counts,
            "models": {c: per_class_means(per, all_labels, class_names)[2] for c, per in per_image.items()},
            "ground_truth": per_class_means(truth_per_image, all_labels, class_names)[2],
        }
    return out


def _correct(probe: ProbeNet, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """1.0 where the probe names the right class, per image."""
    return (probe.head(features).argmax(dim=1) == labels).float().cpu()


def _resize_protocol(datamodule: Any, image_size: int) -> str:
    if hasattr(datamodule, "root"):
        return (
            f"photos resized (bicubic) so the shorter side is {image_size} px, then centre-cropped to "
            f"{image_size} x {image_size}"
        )
    return f"CIFAR-10 test images at their native {image_size} x {image_size}: no resize, no crop"


def skipped_images(datamodule: Any) -> dict[str, Any] | None:
    """The unreadable files the test split skipped, each with why; None for data that cannot have any."""
    tally = getattr(datamodule, "skipped_images", None)
    if tally is None:
        return None
    summary = tally.summary()
    return {**summary, "reasons": [tally.reasons[f] for f in summary["files"]]}


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate ``cfg.ckpt_path`` (one path or a list) and the gray baseline; write the report."""
    start = time.time()
    ecfg = cfg.get("eval") or OmegaConf.create({})
    device = pick_device(cfg.get("device", "auto"))
    candidates = [Candidate("gray", None)]
    for path in as_path_list(cfg.get("ckpt_path")):
        generator, hparams = load_generator(path, device, ecfg.get("stochastic_inference"))
        trained_size = hparams.get("generator", {}).get("image_size")
        if trained_size and trained_size != cfg.data.image_size:
            log.warning("%s was trained at %s px but data.image_size=%s", path, trained_size, cfg.data.image_size)
        candidates.append(Candidate(checkpoint_label(path), generator))

    datamodule = hydra.utils.instantiate(cfg.data)
    class_names = list(getattr(datamodule, "class_names", None) or []) or None
    backends = load_backends(ecfg, device, class_names)
    per_class_mode = _mode(ecfg.get("per_class", "auto"), "eval.per_class")
    loop_start = time.time()
    out = run_evaluation(
        candidates,
        datamodule,
        device,
        cfg.get("limit_batches"),
        cfg.get("num_samples", 8),
        backends=backends,
        per_class=per_class_mode != "false",
        diversity=bool(ecfg.get("diversity", False)),
    )
    loop_seconds = time.time() - loop_start
    if out["per_class"] is None and per_class_mode != "false":
        backends.skipped["per_class"] = "per-class results skipped: this test split has no class labels"

    output_dir = Path(cfg.paths.output_dir)
    short = len(candidates) == 2
    grid = make_grid(
        [("gray", out["samples"]["gray"])]
        + [(c.name.split("/")[-1] if short else c.name, out["samples"][c.name]) for c in candidates[1:]]
        + [("truth", out["samples"]["truth"])]
    )
    grid_path = save_image_atomic(grid, output_dir / "samples.png")
    if ecfg.get("samples_out"):  # e.g. the README's picture: docs/cifar10_samples.png
        save_image_atomic(grid, Path(str(ecfg.samples_out)).expanduser())
    metric_names = list(next(iter(out["results"].values())))
    skipped = skipped_images(datamodule)
    split = datamodule.split_description("test") if hasattr(datamodule, "split_description") else "test"
    protocol = {
        "split": split,
        "resize": _resize_protocol(datamodule, cfg.data.image_size),
        **{k: v for k, v in PROTOCOL.items() if k in metric_names or k in ("quantisation", "per_class")},
    }
    report: dict[str, Any] = {
        "checkpoints": as_path_list(cfg.get("ckpt_path")),
        "data": cfg.data.get("_target_"),
        "split": split,
        "num_images": out["num_images"],
        **({"skipped_images": skipped} if skipped is not None else {}),
        "protocol": protocol,
        "backends": backends.used,
        "skipped": backends.skipped,
        "ground_truth": out["ground_truth"],
        "models": out["results"],
        "per_class": out["per_class"],
    }
    if backends.probe is not None:
        report["probe"] = {
            "weights": backends.probe_info["weights"],
            "trained": backends.probe_info.get("info", {}),
            "accuracy": {"truth": out["ground_truth"]["probe_accuracy"]}
            | {name: row["probe_accuracy"] for name, row in out["results"].items()},
            "note": "fid_probe is a Frechet distance on this classifier's features: not comparable to Inception FID",
        }
    report["timing"] = {
        "seconds": round(time.time() - start, 2),
        "scoring_seconds": round(loop_seconds, 2),
        "images_per_second": round(out["num_images"] / max(loop_seconds, 1e-9), 1),
        "device": str(device),
    }
    report["files"] = {"grid": str(grid_path), **write_report(report, output_dir)}
    (output_dir / "metrics.json").write_text(json.dumps(report, indent=2))
    table = format_table(out["results"], out["ground_truth"])
    notes = "".join(f"\n{reason}" for reason in backends.skipped.values())
    unread = f"\n{skipped_summary(skipped, output_dir / 'report.md')}" if skipped and skipped["count"] else ""
    print(f"\n{out['num_images']} test images{unread}\n{table}\n{notes}\n\nwritten to {output_dir}")
    return report
