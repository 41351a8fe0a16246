"""Score trained generators against the gray baseline on a test split, image by image, with ``trainer.test``.

Lightning runs the scoring as it runs training (devices, precision, DDP, the data module's RGB -> Lab
and unreadable-file hooks). Every per-image metric is kept image by image, so overall and per-class
means come from the same numbers. Metrics that need pretrained networks (FID's Inception, LPIPS's
AlexNet, the CIFAR-10 probe) run only when their weights are on disk; otherwise the report says why.
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
from lightning.pytorch import LightningModule, Trainer
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn
from torchmetrics import CatMetric

from colorgan.checkpoint import load_generator, trained_size
from colorgan.color import AB_SCALE
from colorgan.data.datasets import drop_skipped
from colorgan.evaluate.fid import INCEPTION_URL, FeatureStats, FrechetReference, build_inception
from colorgan.evaluate.metrics import (
    PER_IMAGE_METRICS,
    Rendered,
    build_lpips,
    colorfulness,
    lpips_backbone_url,
    lpips_per_image,
)
from colorgan.evaluate.probe import TRAIN_COMMAND, ProbeError, ProbeNet, load_probe
from colorgan.evaluate.report import format_table, skipped_summary, write_report
from colorgan.evaluate.sample_grid import make_grid
from colorgan.files import save_image_atomic, write_text_atomic
from colorgan.inference import GrayBaseline
from colorgan.models import AtTemperature, ColorBinsGenerator, set_stochastic_inference
from colorgan.models.levers import ChromaGain, Reused, SelfEnsemble, check_chroma_gain
from colorgan.output_checks import OutputPlaceError, check_not_an_input, folder_problem
from colorgan.runs.folder import OutputNotWritableError, mark_work_started
from colorgan.runtime import pick_device
from colorgan.train.config_checks import EVAL_PRECISIONS, check_precision, check_value_types
from colorgan.weights import WeightsUnavailable, find_weights

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
    "probe_gap": "(probe_accuracy - gray's) / (truth's - gray's): the share of the classifier's gray-to-truth gap "
    "that the colours recover",
    "per_class": "the same per-image values averaged within each class label; the count-weighted mean of the "
    "per-class values equals the overall value",
    "diversity_ab": "how much the generator's noise changes its colours: two predictions of each test image with "
    "dropout and noise inputs on (stochastic inference), mean |ab_1 - ab_2| per pixel in Lab units, mean over images",
}


@dataclass
class Backends:
    """The optional scorers found for this run, and why the others are off."""

    lpips: nn.Module | None = None
    inception: nn.Module | None = None
    probe: ProbeNet | None = None
    probe_info: dict[str, Any] = field(default_factory=dict)
    used: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def diversity(generator: nn.Module, L: torch.Tensor) -> torch.Tensor:
    """Mean |ab_1 - ab_2| (Lab units) per image between two stochastic predictions of the same L."""
    modes = {m: m.training for m in generator.modules()}
    set_stochastic_inference(generator, True)
    try:
        # fresh copies of L: a lever's shared forward pass (Reused) would hand back its answer to the same tensor
        first, second = generator(L.clone()).float(), generator(L.clone()).float()
    finally:
        for module, training in modes.items():
            module.training = training
    return (first - second).abs().flatten(1).mean(dim=1) * AB_SCALE


def _per_image(names: list[str]) -> nn.ModuleDict:
    return nn.ModuleDict({name: CatMetric(nan_strategy="disable") for name in names})


def _all_ranks(stats: FeatureStats) -> FeatureStats:
    """Every rank's running sums added up: sums over disjoint sets of images are the sums over their union."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return stats
    parts: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(parts, stats)
    total = FeatureStats()
    total.n, total.sum, total.outer = (sum(getattr(p, a) for p in parts) for a in ("n", "sum", "outer"))
    return total


MIN_FRECHET_IMAGES = 2  # a covariance needs two feature vectors per set


def _per_image_values(metric: CatMetric) -> torch.Tensor:
    """A CatMetric's values as a 1-D tensor on the CPU (one value computes to a 0-d tensor)."""
    return metric.compute().reshape(-1).cpu()


GRAY_COLORFULNESS = 1.0  # a test image below this colourfulness (0-255 scale) has no colour to compare with


def grayscale_warning(num_images: int, grayscale_images: int) -> str | None:
    """What the scores mean when the ground truth has no colour: nothing, said plainly."""
    if num_images == 0 or grayscale_images < num_images:
        return None
    return (
        f"every test image is grayscale (all {num_images} have colourfulness below {GRAY_COLORFULNESS:g}): there is "
        "no colour to compare with, so the colour metrics below only measure how gray each candidate stays and "
        "are meaningless as colorization scores; evaluate on a split of colour photos"
    )


def _class_means(values: dict[str, torch.Tensor], labels: torch.Tensor, present: list[int]) -> dict[str, list[float]]:
    return {m: [v[labels == c].double().mean().item() for c in present] for m, v in values.items()}


class EvaluationModule(LightningModule):
    """The gray baseline and each generator, scored image by image on every test batch.

    The candidates keep the modes ``load_generator`` gave them (eval, or stochastic dropout and noise):
    Lightning's switch to eval mode is left out. Under DDP every rank receives every batch (CIFAR-10's
    on-device test batches are not sharded; a DistributedSampler would repeat images) and rank r scores
    batches r, r + world size, ...: each image once. Per-image values are CatMetrics, gathered from all
    ranks when computed, so after ``trainer.test`` every rank holds the same ``results``.
    """

    def __init__(
        self,
        generators: dict[str, nn.Module],
        backends: Backends | None = None,
        num_samples: int = 8,
        diversity: bool = False,
        per_class: bool = True,
    ) -> None:
        super().__init__()
        backends = backends or Backends()
        self.names = ["gray", *generators]
        self.candidates = nn.ModuleList([GrayBaseline(), *generators.values()])
        self.lpips, self.inception, self.probe = backends.lpips, backends.inception, backends.probe
        self.num_samples, self.diversity, self.per_class = num_samples, diversity, per_class
        extra = {"diversity_ab": diversity, "lpips": self.lpips is not None, "probe_accuracy": self.probe is not None}
        metrics = [*PER_IMAGE_METRICS, *(name for name, on in extra.items() if on)]
        self.values = nn.ModuleList(_per_image(metrics) for _ in self.names)
        self.truth_values = _per_image(["colorfulness", *(["probe_accuracy"] if self.probe is not None else [])])
        self.labels = CatMetric(nan_strategy="disable")
        nets = {"fid": self.inception, "fid_probe": self.probe}
        self.stats = {metric: defaultdict(FeatureStats) for metric, net in nets.items() if net is not None}
        self.samples: dict[str, torch.Tensor] = {}
        self.results: dict[str, Any] = {}

    def on_test_model_eval(self) -> None:
        """Keep each candidate's inference mode (see the class docstring)."""

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        batch = drop_skipped(batch)
        if batch_idx % self.trainer.world_size != self.global_rank or len(batch["rgb"]) == 0:
            return  # another rank's batch, or nothing but unreadable files
        L, truth = batch["L"], Rendered(batch["rgb"], batch["ab"])
        labels = batch["label"] if "label" in batch else torch.full((len(L),), -1, device=L.device)
        predictions = [(g(L).float(), diversity(g, L) if self.diversity else None) for g in self.candidates]
        with torch.autocast(self.device.type, enabled=False):  # generators at trainer.precision, scores in float32
            self.labels.update(labels)
            self.truth_values["colorfulness"].update(colorfulness(truth.rgb))
            self._set_features("truth", truth.rgb, labels, self.truth_values)
            rendered = {}
            for name, values, (ab, spread) in zip(self.names, self.values, predictions):
                pred = Rendered.from_lab(L, ab)
                for metric, score in PER_IMAGE_METRICS.items():
                    values[metric].update(score(pred, truth).float())
                if spread is not None:
                    values["diversity_ab"].update(spread)
                if self.lpips is not None:
                    values["lpips"].update(lpips_per_image(self.lpips, pred.rgb, truth.rgb))
                self._set_features(name, pred.rgb, labels, values)
                rendered[name] = pred.rgb
            if not self.samples:  # the first batch: the sample grid's rows
                rendered["truth"] = truth.rgb
                self.samples = {n: rgb[: self.num_samples].float().cpu() / 255 for n, rgb in rendered.items()}

    def _set_features(self, name: str, rgb: torch.Tensor, labels: torch.Tensor, values: nn.ModuleDict) -> None:
        """The probe's verdict per image, and the features FID and fid_probe compare as sets."""
        if self.probe is not None:
            features = self.probe.features(rgb)
            values["probe_accuracy"].update((self.probe.head(features).argmax(dim=1) == labels).float())
            self.stats["fid_probe"][name].update(features)
        if self.inception is not None:
            self.stats["fid"][name].update(self.inception(rgb))

    def on_test_epoch_end(self) -> None:
        labels = self.labels.compute()
        if not isinstance(labels, torch.Tensor) or labels.numel() == 0:
            raise ValueError("the test split is empty: nothing to evaluate")
        labels = _per_image_values(self.labels)
        per_image = {
            n: {m: _per_image_values(v) for m, v in values.items()} for n, values in zip(self.names, self.values)
        }
        truth = {m: _per_image_values(v) for m, v in self.truth_values.items()}
        results = {n: {m: v.double().mean().item() for m, v in per.items()} for n, per in per_image.items()}
        for metric, by_set in self.stats.items() if len(labels) >= MIN_FRECHET_IMAGES else ():
            reference = FrechetReference(_all_ranks(by_set["truth"]))
            for name in self.names:
                results[name][metric] = reference.distance(_all_ranks(by_set[name]))
        labels = labels.long()
        self.results = {
            "num_images": len(labels),
            "grayscale_images": int((truth["colorfulness"] < GRAY_COLORFULNESS).sum()),
            "ground_truth": {m: v.double().mean().item() for m, v in truth.items()},
            "models": results,
            "per_class": None,
        }
        if self.per_class and bool((labels >= 0).all()):
            present = sorted(int(c) for c in labels.unique())
            class_names = list(getattr(self.trainer.datamodule, "class_names", None) or [])
            self.results["per_class"] = {
                "classes": [class_names[c] if c < len(class_names) else str(c) for c in present],
                "counts": [int((labels == c).sum()) for c in present],
                "models": {n: _class_means(per, labels, present) for n, per in per_image.items()},
                "ground_truth": _class_means(truth, labels, present),
            }


def build_trainer(device: str = "auto", limit_batches: int | None = None, **options: Any) -> Trainer:
    """A Trainer for ``trainer.test`` on ``device`` (colorgan.runtime.pick_device); ``options`` go to Lightning."""
    chosen = pick_device(str(device), "device")
    options.setdefault("devices", [chosen.index] if chosen.index is not None else 1)
    # no logger, checkpoints or summary: the report is the output; EvaluationModule shares out the batches itself
    quiet = {"logger": False, "enable_checkpointing": False, "enable_model_summary": False}
    return Trainer(
        accelerator=chosen.type, limit_test_batches=limit_batches, use_distributed_sampler=False, **quiet, **options
    )


def checkpoint_label(path: str | Path) -> str:
    """A short readable name: ``<run folder>/<file stem>``."""
    path = Path(path)
    run = path.parent.parent.name if path.parent.name == "checkpoints" else path.parent.name
    return f"{run}/{path.stem}" if run else path.stem


def at_temperatures(label: str, generator: nn.Module, temperatures: Any) -> dict[str, nn.Module]:
    """One candidate per annealed-mean temperature of a classification generator (``eval.temperatures``).

    They share the weights, so one run of evaluate.py gives the model's PSNR-versus-colourfulness
    curve; a regression generator, or no temperatures, is one candidate under its own label.
    """
    if not temperatures or not isinstance(generator, ColorBinsGenerator):
        return {label: generator}
    return {f"{label}@T={t:g}": AtTemperature(generator, t) for t in _numbers(temperatures)}


def _numbers(value: Any) -> list[float]:
    return [float(v) for v in (value if isinstance(value, (list, tuple, ListConfig)) else [value])]


def lever_rows(candidates: dict[str, nn.Module], chroma_gains: Any, self_ensemble: Any) -> dict[str, nn.Module]:
    """Each candidate at each chroma gain (``eval.chroma_gains``), each also self-ensembled (``eval.self_ensemble``).

    Rows are labelled ``@gain=G`` and ``@ensemble``; the gains of one candidate share its forward pass.
    """
    if not isinstance(self_ensemble, bool):
        raise ValueError(f"eval.self_ensemble must be true or false, got {self_ensemble!r}")
    gains = [check_chroma_gain(g) for g in _numbers(chroma_gains)] if chroma_gains is not None else []
    rows: dict[str, nn.Module] = {}
    for label, generator in candidates.items():
        variants = {label: generator}
        if self_ensemble:
            variants[f"{label}@ensemble"] = SelfEnsemble(generator)
        for name, variant in variants.items():
            if not gains:
                rows[name] = variant
                continue
            shared = Reused(variant)
            rows.update({f"{name}@gain={g:g}": ChromaGain(shared, g) for g in gains})
    return rows


def add_probe_gap(models: dict[str, dict[str, float]], truth_accuracy: float) -> None:
    """``probe_gap``: the share of the gray-to-truth gap in probe accuracy that a model's colours recover.

    (acc - gray) / (truth - gray): 0 is no better than gray, 1 is as good as the true colours, below 0
    is colour that misleads. Zhang et al. 2016 recover about 21% on ImageNet, Larsson et al. 2016 43%.
    """
    gray = models["gray"]["probe_accuracy"]
    gap = truth_accuracy - gray
    if gap <= 0:  # a probe no better on the true colours than on gray measures nothing here: no column
        return
    for row in models.values():
        row["probe_gap"] = (row["probe_accuracy"] - gray) / gap


def scored_split(ecfg: Any) -> str:
    split = str(ecfg.get("split", "test"))
    if split not in ("test", "val"):
        raise ValueError(f"eval.split must be test or val, got {split!r}")
    return split


def _folders(path: str | Path) -> list[str]:
    """The folders above a checkpoint, nearest last, without the ``checkpoints`` folder a run keeps them in."""
    folders = list(Path(path).expanduser().absolute().parent.parts[1:])
    return folders[:-1] if folders[-1:] == ["checkpoints"] else folders


def checkpoint_labels(paths: list[str]) -> list[str]:
    """One distinct label per checkpoint: ``checkpoint_label``, lengthened by parent folders where two would be
    the same (two runs' ``last.ckpt`` in folders of one name), numbered ``#2``, ... for a file given twice."""
    labels = [checkpoint_label(p) for p in paths]
    for label in set(labels):
        group = [i for i, other in enumerate(labels) if other == label]
        if len({Path(paths[i]).expanduser().absolute() for i in group}) < 2:
            continue
        for depth in range(1, max(len(_folders(paths[i])) for i in group) + 1):
            longer = {i: "/".join([*_folders(paths[i])[-depth:], Path(paths[i]).stem]) for i in group}
            if len(set(longer.values())) == len(group):
                break
        for i in group:
            labels[i] = longer[i]
    seen: dict[str, int] = {}
    for i, label in enumerate(labels):
        seen[label] = seen.get(label, 0) + 1
        labels[i] = label if seen[label] == 1 else f"{label}#{seen[label]}"
    return labels


def check_samples_out(value: Any) -> Path | None:
    """``eval.samples_out`` names a file that can be written: found before scoring, not after it."""
    if not value:
        return None
    path = Path(str(value)).expanduser().absolute()
    problem = f"{path} is a folder" if path.is_dir() else folder_problem(path.parent)
    if problem:
        raise OutputNotWritableError(
            f"eval.samples_out={path} cannot be written: {problem}; set eval.samples_out to a file in a folder you "
            "can write to, or leave it null"
        )
    return path


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


def _setup(ecfg: Any, name: str, label: str, backends: Backends, build: Callable[[], str]) -> None:
    """Run ``build`` (it sets one backend up and says what it used), or record why it could not."""
    mode = _mode(ecfg.get(name, "auto"), f"eval.{name}")
    if mode == "false":
        return
    try:
        backends.used[name] = build()
    except (WeightsUnavailable, ProbeError) as err:
        if mode == "true":  # asked for explicitly: a missing file is an error, not a note
            raise type(err)(f"eval.{name}=true, but {err}") from err
        backends.skipped[name] = f"{label} skipped: {err}"
        log.warning(backends.skipped[name])


def load_backends(ecfg: DictConfig | dict[str, Any], class_names: list[str] | None) -> Backends:
    """Build FID, LPIPS and the probe from local files (on the CPU; Lightning moves them); record why any is off."""
    b, cpu = Backends(), torch.device("cpu")

    def fid() -> str:
        weights = find_weights(ecfg.get("fid_weights"), "eval.fid_weights", INCEPTION_URL)
        features = int(ecfg.get("fid_features", 2048))
        b.inception = build_inception(weights, cpu, features)
        return f"Inception-v3 FID weights {weights}, {features}-d features"

    def lpips() -> str:
        net = ecfg.get("lpips_net", "alex")
        weights = find_weights(ecfg.get("lpips_weights"), "eval.lpips_weights", lpips_backbone_url(net))
        b.lpips = build_lpips(net, weights, cpu)
        return f"LPIPS v0.1, {net} backbone {weights}"

    def probe() -> str:
        path = ecfg.get("probe_weights")
        if not path:
            raise ProbeError(f"eval.probe_weights is not set; create a probe with: {TRAIN_COMMAND}")
        if not class_names:
            raise ProbeError("this data set has no class labels, which the semantic test needs")
        net, info = load_probe(path, cpu)
        if list(info.get("class_names", [])) != list(class_names):
            raise ProbeError(f"the probe at {path} classifies {info.get('class_names')}, not this data set's classes")
        b.probe, b.probe_info = net, {"weights": str(path), **info}
        return f"CIFAR-10 probe {path}"

    _setup(ecfg, "fid", "FID", b, fid)
    _setup(ecfg, "lpips", "LPIPS", b, lpips)
    _setup(ecfg, "probe", "probe_accuracy and fid_probe", b, probe)
    return b


def _resize_protocol(datamodule: Any, size: int) -> str:
    if hasattr(datamodule, "root"):
        return f"photos resized (bicubic) so the shorter side is {size} px, then centre-cropped to {size} x {size}"
    return f"CIFAR-10 test images at their native {size} x {size}: no resize, no crop"


def skipped_images(datamodule: Any) -> dict[str, Any] | None:
    """The unreadable files the test split skipped, each with why; None for data that cannot have any."""
    tally = getattr(datamodule, "skipped_images", None)
    if tally is None:
        return None
    summary = tally.summary()
    return {**summary, "reasons": [tally.reasons[f] for f in summary["files"]]}


SAMPLES_SUFFIXES = (".png", ".jpg", ".jpeg")


def check_samples_out_is_no_input(cfg: DictConfig) -> None:
    """Before any work: ``eval.samples_out`` names an image to write, and no input or training file.

    Not a checkpoint (given or any other), not a file of a run's checkpoints/ or a model folder,
    and not inside ``data.root``, where the grid would be read as a photo.
    """
    value = (cfg.get("eval") or {}).get("samples_out")
    if not value:
        return
    path, key = Path(str(value)).expanduser(), f"eval.samples_out={value}"
    check_not_an_input(path, [("ckpt_path", c) for c in as_path_list(cfg.get("ckpt_path"))], "eval.samples_out")
    root = (cfg.get("data") or {}).get("root")
    if root and "://" not in str(root) and path.resolve().is_relative_to(Path(str(root)).expanduser().resolve()):
        raise OutputPlaceError(
            f"{key} is inside data.root={root}, where the grid would be read as a photo; write it elsewhere"
        )
    if path.suffix.lower() not in SAMPLES_SUFFIXES:
        raise OutputPlaceError(
            f"{key}: the sample grid is an image, so name a {' or '.join(SAMPLES_SUFFIXES)} file "
            "(e.g. docs/cifar10_samples.png)"
        )


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate ``cfg.ckpt_path`` (one path or a list) and the gray baseline; rank 0 writes the report."""
    start = time.time()
    check_value_types(cfg)
    check_samples_out_is_no_input(cfg)
    ecfg = cfg.get("eval") or OmegaConf.create({})
    options = {k: v for k, v in OmegaConf.to_container(cfg.get("trainer") or {}, resolve=True).items() if v is not None}
    if "precision" in options:
        check_precision(options["precision"], EVAL_PRECISIONS)
    samples_out = check_samples_out(ecfg.get("samples_out"))
    trainer = build_trainer(cfg.get("device", "auto"), cfg.get("limit_batches"), **options)
    generators = {}
    paths = as_path_list(cfg.get("ckpt_path"))
    for path, label in zip(paths, checkpoint_labels(paths)):
        generator, hparams = load_generator(path, "cpu", ecfg.get("stochastic_inference"))
        trained = trained_size(hparams)
        if trained and trained != cfg.data.image_size:
            log.warning("%s was trained at %s px but data.image_size=%s", path, trained, cfg.data.image_size)
        candidates = at_temperatures(label, generator, ecfg.get("temperatures"))
        generators.update(lever_rows(candidates, ecfg.get("chroma_gains"), ecfg.get("self_ensemble", False)))

    datamodule = hydra.utils.instantiate(cfg.data)
    scored = scored_split(ecfg)
    if scored == "val":
        datamodule.score_validation_split()
    backends = load_backends(ecfg, list(getattr(datamodule, "class_names", None) or []) or None)
    per_class_mode = _mode(ecfg.get("per_class", "auto"), "eval.per_class")
    module = EvaluationModule(
        generators, backends, cfg.get("num_samples", 8), bool(ecfg.get("diversity", False)), per_class_mode != "false"
    )
    loop_start = time.time()
    trainer.test(module, datamodule=datamodule, verbose=False)
    loop_seconds = time.time() - loop_start
    mark_work_started()  # from here a failure keeps the run folder: it holds this evaluation's results
    out = module.results
    if out["num_images"] < MIN_FRECHET_IMAGES:
        for metric in module.stats:
            backends.skipped[metric] = (
                f"{metric} skipped: a Frechet distance needs at least {MIN_FRECHET_IMAGES} test images, this split "
                f"has {out['num_images']}"
            )
    if out["per_class"] is None and per_class_mode != "false":
        backends.skipped["per_class"] = "per-class results skipped: this test split has no class labels"

    skipped = skipped_images(datamodule)
    split = datamodule.split_description(scored) if hasattr(datamodule, "split_description") else scored
    protocol = {
        "split": split,
        "resize": _resize_protocol(datamodule, cfg.data.image_size),
        **{k: v for k, v in PROTOCOL.items() if k in out["models"]["gray"] or k in ("quantisation", "per_class")},
    }
    warning = grayscale_warning(out["num_images"], out["grayscale_images"])
    report: dict[str, Any] = {
        "checkpoints": paths,
        "warnings": [warning] if warning else [],
        "data": cfg.data.get("_target_"),
        "split": split,
        "num_images": out["num_images"],
        "grayscale_images": out["grayscale_images"],
        **({"skipped_images": skipped} if skipped is not None else {}),
        "protocol": protocol,
        "backends": backends.used,
        "skipped": backends.skipped,
        "ground_truth": out["ground_truth"],
        "models": out["models"],
        "per_class": out["per_class"],
    }
    if backends.probe is not None:
        report["probe"] = {
            "weights": backends.probe_info["weights"],
            "trained": backends.probe_info.get("info", {}),
            "accuracy": {"truth": out["ground_truth"]["probe_accuracy"]}
            | {name: row["probe_accuracy"] for name, row in out["models"].items()},
            "note": "fid_probe is a Frechet distance on this classifier's features: not comparable to Inception FID",
        }
        add_probe_gap(out["models"], out["ground_truth"]["probe_accuracy"])
    report["timing"] = {
        "seconds": round(time.time() - start, 2),
        "scoring_seconds": round(loop_seconds, 2),
        "images_per_second": round(out["num_images"] / max(loop_seconds, 1e-9), 1),
        "device": str(trainer.strategy.root_device),
    }
    if not trainer.is_global_zero:
        return report
    output_dir = Path(cfg.paths.output_dir)
    short = len(generators) == 1  # one model: its column is titled by the file name alone
    grid = make_grid([(n.split("/")[-1] if short else n, rgb) for n, rgb in module.samples.items()])
    grid_path = save_image_atomic(grid, output_dir / "samples.png")
    report["files"] = {"grid": str(grid_path), **write_report(report, output_dir)}
    write_text_atomic(output_dir / "metrics.json", json.dumps(report, indent=2))
    table = format_table(out["models"], out["ground_truth"])
    notes = "".join(f"\n{reason}" for reason in backends.skipped.values())
    unread = f"\n{skipped_summary(skipped, output_dir / 'report.md')}" if skipped and skipped["count"] else ""
    warned = "".join(f"\nWARNING: {w}" for w in report["warnings"])
    print(f"\n{out['num_images']} test images{unread}{warned}\n{table}\n{notes}\n\nwritten to {output_dir}")
    if samples_out is not None:  # e.g. the README's picture: docs/cifar10_samples.png; written last, so a
        try:  # failure here (a full disk) loses none of the results above
            save_image_atomic(grid, samples_out)
        except OSError as err:
            raise OutputNotWritableError(
                f"eval.samples_out={samples_out} could not be written ({err.strerror or err}); the results are kept "
                f"in {output_dir / 'metrics.json'} and report.md; the same grid is {grid_path}"
            ) from err
    return report
