"""evaluate.py on a tiny checkpoint: metrics, per-class results, the report, and the optional backends."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from PIL import Image
from torch import nn

from colorgan.data import FolderDataModule
from colorgan.data.cifar10 import CLASS_NAMES as CIFAR10_CLASSES
from colorgan.data.cifar10 import load_cifar10_split
from colorgan.evaluate.evaluator import evaluate, lever_rows
from colorgan.evaluate.probe import ProbeError, predict, save_probe, train_probe
from colorgan.train.build import train
from colorgan.weights import WeightsUnavailable
from tests.cli import output, run_script
from tests.conftest import CONF, train_overrides
from tests.test_colorize import save_checkpoint
from tests.test_inference import TINY_UNET

PER_IMAGE = {"psnr", "ssim", "l1_ab", "delta_e", "colorfulness", "delta_cf"}


def compose_cfg(overrides: list[str], data_dir: Path, out: Path, config_name: str = "eval") -> DictConfig:
    """As conftest's make_cfg, usable from a module-scoped fixture."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            config_name=config_name, overrides=[f"paths.data_dir={data_dir}", *overrides], return_hydra_config=True
        )
    with open_dict(cfg):
        cfg.paths.output_dir = cfg.paths.log_dir = cfg.hydra.runtime.output_dir = str(out)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


@pytest.fixture(scope="module")
def checkpoint(data_dir, tmp_path_factory) -> str:
    """One tiny trained generator shared by the tests below (its run folder is named ``run``)."""
    out = tmp_path_factory.mktemp("train") / "run"
    summary = train(compose_cfg(train_overrides("cifar_pretrain", "trainer.max_epochs=1"), data_dir, out, "train"))
    return summary["last_checkpoint"]


@pytest.fixture(scope="module")
def probe_file(data_dir, tmp_path_factory) -> Path:
    images, labels = load_cifar10_split(data_dir, "train")
    net = train_probe(images, labels, widths=(8, 16, 16), max_steps=2, batch_size=16)
    return save_probe(tmp_path_factory.mktemp("probe") / "probe.pt", net, CIFAR10_CLASSES, {"test_accuracy": 0.1})


@pytest.fixture
def run_eval(data_dir, checkpoint, tmp_path):
    def _run(*overrides: str, ckpt: str | None = None) -> tuple[dict, Path]:
        out = tmp_path / "eval"
        cfg = compose_cfg([f"ckpt_path={ckpt or checkpoint}", "device=cpu", *overrides], data_dir, out)
        return evaluate(cfg), out

    return _run


def test_evaluate_writes_metrics_for_model_and_gray_baseline(run_eval):
    report, out = run_eval("data.eval_batch_size=10")
    written = json.loads((out / "metrics.json").read_text())
    assert written == json.loads(json.dumps(report))
    assert written["num_images"] == 24  # the whole tiny test split, last partial batch included
    assert written["split"] == written["protocol"]["split"] == "test: the official CIFAR-10 test set (24 images)"
    models = written["models"]
    assert set(models) == {"gray", "run/last"}
    for row in models.values():
        assert set(row) == PER_IMAGE  # no weights for FID, LPIPS or the probe here
        assert all(math.isfinite(v) for v in row.values())
    gray, truth = models["gray"], written["ground_truth"]
    assert gray["colorfulness"] < 1.0 < truth["colorfulness"]
    assert gray["delta_cf"] == pytest.approx(truth["colorfulness"] - gray["colorfulness"], rel=1e-4)
    assert gray["psnr"] > 10 and 0 < gray["delta_e"] < 100
    assert (out / "samples.png").is_file()
    assert written["timing"]["images_per_second"] > 0


def test_missing_weights_are_skipped_with_the_reason(run_eval, data_dir):
    report, out = run_eval()
    skipped = report["skipped"]
    assert set(skipped) == {"fid", "lpips", "probe"}
    assert "eval.fid_weights" in skipped["fid"] and "weights-inception" in skipped["fid"]
    assert "eval.lpips_weights" in skipped["lpips"] and "alexnet" in skipped["lpips"]
    assert "python -m colorgan.evaluate.probe train" in skipped["probe"] and str(data_dir) in skipped["probe"]
    text = (out / "report.md").read_text()
    for reason in skipped.values():
        assert reason in text


def test_per_class_values_average_to_the_overall_values(run_eval):
    report, _ = run_eval("data.eval_batch_size=7")
    per_class = report["per_class"]
    assert per_class["classes"] == list(CIFAR10_CLASSES)
    counts = per_class["counts"]
    assert counts == [3, 3, 3, 3, 2, 2, 2, 2, 2, 2] and sum(counts) == report["num_images"]
    for name, row in report["models"].items():
        for metric, overall in row.items():
            values = per_class["models"][name][metric]
            weighted = sum(c * v for c, v in zip(counts, values)) / sum(counts)
            assert weighted == pytest.approx(overall, rel=1e-5, abs=1e-6), (name, metric)
    truth = per_class["ground_truth"]["colorfulness"]
    assert sum(c * v for c, v in zip(counts, truth)) / 24 == pytest.approx(report["ground_truth"]["colorfulness"])


def test_report_and_plot_are_written(run_eval):
    report, out = run_eval()
    text = (out / "report.md").read_text()
    for section in ("## Results", "## Not computed", "## Per class", "## Protocol", "per_class.png", "`run/last`"):
        assert section in text
    assert "no resize, no crop" in text and "uint8" in text
    assert text.count("#### ") == len(PER_IMAGE)  # one per-class table per metric
    with Image.open(out / "per_class.png") as plot:
        assert plot.format == "PNG" and plot.width > 300
    assert report["files"] == {
        "grid": str(out / "samples.png"),
        "plot": str(out / "per_class.png"),
        "report": str(out / "report.md"),
    }


def test_probe_accuracy_and_fid_probe_for_truth_gray_and_models(run_eval, probe_file, data_dir):
    report, out = run_eval(f"eval.probe_weights={probe_file}")
    assert "probe" not in report["skipped"]
    accuracy = report["probe"]["accuracy"]
    assert set(accuracy) == {"truth", "gray", "run/last"}
    images, labels = load_cifar10_split(data_dir, "test")
    from colorgan.evaluate.probe import load_probe

    net, _ = load_probe(probe_file)
    assert accuracy["truth"] == pytest.approx((predict(net, images) == labels).float().mean().item())
    assert report["ground_truth"]["probe_accuracy"] == accuracy["truth"]
    for name, row in report["models"].items():
        assert row["probe_accuracy"] == accuracy[name]
        assert math.isfinite(row["fid_probe"]) and row["fid_probe"] >= 0
        assert "probe_accuracy" in report["per_class"]["models"][name]
    assert report["probe"]["trained"] == {"test_accuracy": 0.1}
    gap = accuracy["truth"] - accuracy["gray"]
    if gap > 0:  # the share of the gray-to-truth gap each model's colours recover
        assert report["models"]["gray"]["probe_gap"] == 0
        expected = (accuracy["run/last"] - accuracy["gray"]) / gap
        assert report["models"]["run/last"]["probe_gap"] == pytest.approx(expected)
    else:  # a probe that does no better on the truth than on gray gives no gap to recover
        assert all("probe_gap" not in row for row in report["models"].values())
    text = (out / "report.md").read_text()
    assert "Semantic test" in text and "not comparable to Inception FID" in text


def test_a_probe_for_other_classes_is_not_used(run_eval, tmp_path):
    net = train_probe(torch.zeros(4, 3, 32, 32, dtype=torch.uint8), torch.arange(4) % 2, widths=(8, 8, 8), max_steps=1)
    other = save_probe(tmp_path / "other.pt", net, ("cat", "dog"), {})
    report, _ = run_eval(f"eval.probe_weights={other}")
    assert "not this data set's classes" in report["skipped"]["probe"]


def test_required_metrics_stop_the_run_when_weights_are_missing(run_eval, tmp_path):
    with pytest.raises(WeightsUnavailable, match="fid"):
        run_eval("eval.fid=true")
    with pytest.raises(ProbeError, match="no probe weights"):
        run_eval("eval.probe=true", f"eval.probe_weights={tmp_path / 'none.pt'}")


def test_photo_folders_have_no_classes_and_no_probe(run_eval, probe_file, data_dir):
    report, out = run_eval(
        "data=folder",
        "data.image_size=64",
        "data.eval_batch_size=2",
        "data.num_workers=0",
        "data.test_fraction=0.5",
        f"eval.probe_weights={probe_file}",
    )
    carved = FolderDataModule(str(data_dir / "photos256"), test_fraction=0.5).split_files()["test"]
    assert report["num_images"] == len(carved) and report["per_class"] is None  # test is carved out of train/
    assert report["split"].startswith(f"test: {len(carved)} images carved from train/")  # never val/, which picked
    assert report["split"] in (out / "report.md").read_text()
    assert "no class labels" in report["skipped"]["per_class"]
    assert "no class labels" in report["skipped"]["probe"]
    assert not (out / "per_class.png").exists()
    assert "centre-cropped to 64 x 64" in report["protocol"]["resize"]


@pytest.fixture(scope="module")
def local_weights(tmp_path_factory) -> dict[str, Path]:
    """Random-init stand-ins, in the real files' formats, for the LPIPS backbone and FID's Inception."""
    import torchvision

    fe = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")
    folder = tmp_path_factory.mktemp("weights")
    alexnet = torchvision.models.alexnet(weights=None).state_dict()
    torch.save({k: v for k, v in alexnet.items() if k.startswith("features.")}, folder / "alexnet.pth")
    with pytest.MonkeyPatch.context() as mp:  # build the network without fetching its weights
        mp.setattr(fe, "load_state_dict_from_url", lambda *a, **k: {})
        mp.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None)
        inception = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    torch.save(inception.state_dict(), folder / "inception.pth")
    return {"lpips": folder / "alexnet.pth", "fid": folder / "inception.pth"}


def test_lpips_and_fid_run_from_local_weight_files(run_eval, local_weights, monkeypatch):
    from torchmetrics.image.fid import NoTrainInceptionV3

    monkeypatch.setattr(NoTrainInceptionV3, "INPUT_IMAGE_SIZE", 96)  # not 299: a fraction of the CPU time
    report, out = run_eval(
        f"eval.lpips_weights={local_weights['lpips']}",
        f"eval.fid_weights={local_weights['fid']}",
        "eval.fid_features=64",  # a 2048-d covariance square root alone takes seconds
        "limit_batches=1",
        "data.eval_batch_size=3",
    )
    assert "fid" not in report["skipped"] and "lpips" not in report["skipped"]
    assert str(local_weights["fid"]) in report["backends"]["fid"] and "64-d" in report["backends"]["fid"]
    for row in report["models"].values():
        assert math.isfinite(row["fid"]) and row["fid"] >= 0
        assert math.isfinite(row["lpips"]) and row["lpips"] >= 0
    assert "lpips" in report["per_class"]["models"]["gray"] and "fid" not in report["per_class"]["models"]["gray"]
    assert "Inception-v3" in (out / "report.md").read_text()


def test_an_inception_file_of_the_wrong_kind_is_reported(run_eval, local_weights):
    report, _ = run_eval(f"eval.fid_weights={local_weights['lpips']}", "limit_batches=1")
    assert "not torch-fidelity's FID Inception-v3" in report["skipped"]["fid"]


@pytest.mark.slow
@pytest.mark.distributed
def test_ddp_scores_each_image_once_with_the_numbers_of_one_process(checkpoint, probe_file, data_dir, tmp_path):
    """Two CPU ranks over gloo, launched by evaluate.py as on GPUs: uneven shares (5 batches of at most 5 images)
    and the probe's feature sums are gathered, and rank 0 writes what one process would."""
    common = [f"ckpt_path={checkpoint}", f"paths.data_dir={data_dir}", "device=cpu", "data.eval_batch_size=5"]
    common.append(f"eval.probe_weights={probe_file}")
    for name, devices in (("one", 1), ("two", 2)):
        proc = run_script("evaluate.py", *common, f"trainer.devices={devices}", f"hydra.run.dir={tmp_path / name}")
        assert proc.returncode == 0, output(proc)[-4000:]
        assert ("MEMBER: 2/2" in output(proc)) == (devices == 2)  # rank 1 ran
    one, two = (json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("one", "two"))
    assert two["num_images"] == one["num_images"] == 24
    assert two["per_class"]["counts"] == one["per_class"]["counts"]
    assert set(two["models"]) == set(one["models"]) == {"gray", "run/last"}
    for name, row in one["models"].items():
        assert set(two["models"][name]) == set(row) and "fid_probe" in row
        assert two["models"][name] == pytest.approx(row, rel=1e-6), name
        for metric, values in one["per_class"]["models"][name].items():
            assert two["per_class"]["models"][name][metric] == pytest.approx(values, rel=1e-6), (name, metric)
    assert two["ground_truth"] == pytest.approx(one["ground_truth"], rel=1e-6)


def test_the_validation_split_can_be_scored_instead_of_the_test_split(run_eval):
    report, _ = run_eval("eval.split=val", "data.val_size=16")
    assert report["num_images"] == 16 and report["split"].startswith("val: 16 images held out of the CIFAR-10 train")
    with pytest.raises(ValueError, match=r"eval\.split must be test or val"):
        run_eval("eval.split=train")


def test_a_classification_model_is_scored_at_each_temperature(run_eval, tmp_path):
    (tmp_path / "run").mkdir()
    ckpt = save_checkpoint({**TINY_UNET, "head": "classification"}, tmp_path / "run" / "bins.ckpt")
    report, _ = run_eval("eval.temperatures=[0.2,1.0]", ckpt=str(ckpt))
    assert set(report["models"]) == {"gray", "run/bins@T=0.2", "run/bins@T=1"}
    vivid, mean = report["models"]["run/bins@T=0.2"], report["models"]["run/bins@T=1"]
    assert vivid["colorfulness"] != mean["colorfulness"]


def test_evaluate_lever_rows_are_named_and_a_gain_of_zero_scores_as_gray(run_eval):
    report, _ = run_eval("eval.chroma_gains=[0,1]", "eval.self_ensemble=true")
    models = report["models"]
    assert set(models) == {
        "gray",
        "run/last@gain=0",
        "run/last@gain=1",
        "run/last@ensemble@gain=0",
        "run/last@ensemble@gain=1",
    }
    for metric in ("psnr", "delta_e", "colorfulness"):
        assert models["run/last@gain=0"][metric] == pytest.approx(models["gray"][metric], rel=1e-6)
    assert models["run/last@ensemble@gain=1"]["delta_e"] != models["run/last@gain=1"]["delta_e"]
    with pytest.raises(ValueError, match=r"eval\.self_ensemble must be true or false"):
        lever_rows({"m": nn.Identity()}, None, "yes")


def test_samples_out_never_replaces_a_checkpoint_or_lands_among_inputs(data_dir, tmp_path, monkeypatch):
    from colorgan.output_checks import OutputPlaceError
    from tests.test_colorize import save_checkpoint
    from tests.test_inference import TINY_UNET

    checkpoints = tmp_path / "run" / "checkpoints"
    checkpoints.mkdir(parents=True)
    ckpt = save_checkpoint(TINY_UNET, checkpoints / "last.ckpt")
    other = save_checkpoint(TINY_UNET, tmp_path / "other.ckpt")
    kept = {p: p.read_bytes() for p in (ckpt, other)}

    def refuse(*args, **kwargs):
        raise AssertionError("evaluation started before eval.samples_out was checked")

    monkeypatch.setattr("colorgan.evaluate.evaluator.load_generator", refuse)
    monkeypatch.setattr("colorgan.evaluate.evaluator.build_trainer", refuse)
    photos = data_dir / "photos256"
    cases = [
        ([], ckpt, "is the ckpt_path"),
        ([], other, "is an existing checkpoint"),
        ([], checkpoints / "grid.png", "checkpoints folder"),
        ([], tmp_path / "grid.txt", "name a .png or .jpg"),
        (["data=folder", f"data.root={photos}"], photos / "grid.png", "inside data.root"),
    ]
    for overrides, samples_out, words in cases:
        cfg = compose_cfg([f"ckpt_path={ckpt}", f"eval.samples_out={samples_out}", *overrides], data_dir, tmp_path)
        with pytest.raises(OutputPlaceError, match=r"eval\.samples_out") as err:
            evaluate(cfg)
        assert str(samples_out) in str(err.value) and words in str(err.value), err.value
    assert {p: p.read_bytes() for p in kept} == kept and not (checkpoints / "grid.png").exists()


def test_the_probe_gap_is_the_share_of_the_gray_to_truth_gap_and_absent_without_one():
    from colorgan.evaluate.evaluator import add_probe_gap

    models = {"gray": {"probe_accuracy": 0.70}, "a": {"probe_accuracy": 0.75}, "b": {"probe_accuracy": 0.65}}
    add_probe_gap(models, 0.90)
    assert models["gray"]["probe_gap"] == 0 and models["a"]["probe_gap"] == pytest.approx(0.25)
    assert models["b"]["probe_gap"] == pytest.approx(-0.25)
    flat = {"gray": {"probe_accuracy": 0.70}, "a": {"probe_accuracy": 0.75}}
    add_probe_gap(flat, 0.70)
    assert all("probe_gap" not in row for row in flat.values())
