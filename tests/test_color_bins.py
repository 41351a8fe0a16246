"""Colour as classification: in-gamut ab bins, soft-encoded rebalanced targets, annealed-mean decoding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from colorgan.apps.colorize import main as colorize
from colorgan.apps.export import main as export
from colorgan.color import AB_SCALE, rgb_to_lab_normalized
from colorgan.data.device_batches import random_translate
from colorgan.evaluate.evaluator import at_temperatures
from colorgan.model_folder import resolve_model_path
from colorgan.models import ColorBinsGenerator, build_discriminator, build_generator, in_gamut_bins, set_temperature
from colorgan.train.build import build
from colorgan.train.losses import ColorBinLoss
from tests.conftest import train_overrides
from tests.test_colorize import save_checkpoint
from tests.test_inference import TINY_UNET

pytestmark = pytest.mark.usefixtures("one_thread")
TINY_BINS = {**TINY_UNET, "head": "classification"}


def test_the_bins_cover_every_srgb_colour_within_half_a_cell():
    bins = in_gamut_bins(10.0)
    assert len(bins) == 262 and bins.abs().max() <= AB_SCALE
    assert any(torch.equal(b, torch.zeros(2)) for b in bins)
    every_colour = torch.stack(torch.meshgrid(*[torch.arange(0, 256, 15, dtype=torch.uint8)] * 3, indexing="ij"))
    _, ab = rgb_to_lab_normalized(every_colour.reshape(1, 3, -1, 1))
    distance = torch.cdist(ab.reshape(2, -1).T * AB_SCALE, bins).min(dim=1).values
    assert distance.max() <= 5 * 2**0.5 + 1e-3  # inside its own cell: the half diagonal of a 10 x 10 square


def test_soft_targets_are_the_nearest_bins_weighted_by_distance():
    bins = in_gamut_bins(10.0) / AB_SCALE
    loss = ColorBinLoss(bins)
    centre = bins[100].view(1, 2, 1, 1)
    nearest, weights = loss._encode(centre)
    assert nearest[0, 0] == 100 and weights.shape == (1, 5)
    assert torch.allclose(weights.sum(dim=1), torch.ones(1)) and weights[0, 0] == weights.max()


def test_the_loss_is_lowest_for_logits_that_put_the_mass_on_the_true_bin():
    bins = in_gamut_bins(10.0) / AB_SCALE
    loss = ColorBinLoss(bins, rebalance=1.0)
    ab = bins[[40, 200]].T.reshape(1, 2, 1, 2)
    right = torch.full((1, len(bins), 1, 2), -10.0)
    right[0, 40, 0, 0] = right[0, 200, 0, 1] = 10.0
    wrong = right.roll(1, dims=1)
    assert loss(right, ab) < loss(wrong, ab)


def test_rebalancing_weighs_rare_colours_more_and_averages_one_under_the_prior():
    bins = in_gamut_bins(10.0) / AB_SCALE
    loss = ColorBinLoss(bins, rebalance=0.5)
    gray, red = torch.zeros(2), bins[torch.argmax(bins[:, 0])]
    common = gray.view(1, 2, 1, 1).expand(1, 2, 30, 30)
    loss.count(common)
    loss.count(red.view(1, 2, 1, 1).expand(1, 2, 1, 3))
    weights = loss.class_weights()
    gray_bin = torch.cdist(gray[None], bins).argmin()
    red_bin = torch.cdist(red[None], bins).argmin()
    assert weights[red_bin] > 5 * weights[gray_bin]
    prior = loss.counts / loss.counts.sum()
    kernel = torch.exp(-torch.cdist(bins, bins).square() / (2 * loss.sigma**2))
    smoothed = kernel @ prior
    assert torch.isclose((smoothed / smoothed.sum() * weights).sum(), torch.tensor(1.0), atol=1e-4)


def test_a_lower_temperature_moves_the_decoded_colour_from_the_mean_to_the_mode():
    generator = build_generator(TINY_BINS)
    bins = generator.bins
    blue, yellow = torch.argmin(bins[:, 1]), torch.argmax(bins[:, 1])
    logits = torch.full((1, len(bins), 1, 1), -30.0)
    logits[0, blue], logits[0, yellow] = 1.0, 1.2  # two colours, yellow slightly more likely
    mean = generator.decode(logits, (1, 1), temperature=1.0)
    mode = generator.decode(logits, (1, 1), temperature=0.01)
    assert torch.allclose(mode.flatten(), bins[yellow], atol=1e-3)
    assert mean.flatten().norm() < 0.5 * mode.flatten().norm()  # the mean of opposite colours is grayish


def test_the_classification_generator_returns_ab_of_the_inputs_size():
    generator = build_generator(TINY_BINS).eval()
    assert isinstance(generator, ColorBinsGenerator) and generator.num_bins == 262
    ab = generator(torch.rand(2, 1, 45, 70) * 2 - 1)
    assert ab.shape == (2, 2, 45, 70) and ab.abs().max() <= 1
    resnet = build_generator({"name": "resnet18_unet", "image_size": 32, "head": "classification"}).eval()
    assert resnet(torch.rand(1, 1, 33, 40)).shape == (1, 2, 33, 40)


def test_translation_is_a_crop_of_the_reflected_image():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    shifted = random_translate(images, 2)
    assert shifted.dtype == torch.uint8 and shifted.shape == images.shape
    padded = torch.nn.functional.pad(images.float(), (2, 2, 2, 2), mode="reflect").to(torch.uint8)
    for image, out in zip(padded, shifted):
        crops = [image[:, y : y + 8, x : x + 8] for y in range(5) for x in range(5)]
        assert any(torch.equal(out, crop) for crop in crops)
    assert not torch.equal(shifted, images)


def test_spectral_norm_keeps_every_convolution_at_unit_gain():
    torch.manual_seed(0)
    d = build_discriminator({"name": "patchgan", "n_layers": 2, "ndf": 8, "norm": "none", "spectral_norm": True})
    for _ in range(30):  # power iterations run in train mode
        d(torch.randn(2, 1, 32, 32), torch.randn(2, 2, 32, 32))
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(hasattr(m, "parametrizations") for m in convs)
    for conv in convs:
        assert torch.linalg.matrix_norm(conv.weight.flatten(1), ord=2) < 1.05


def test_one_classification_step_learns_the_prior_and_moves_g(make_cfg):
    cfg = make_cfg(
        train_overrides(
            "cifar_pretrain",
            "model.generator.head=classification",
            "data.translate=2",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=2",
            "trainer.limit_val_batches=1",
            "callbacks=none",
        )
    )
    datamodule, model, trainer = build(cfg)
    before = {k: v.clone() for k, v in model.generator.state_dict().items()}
    trainer.fit(model, datamodule=datamodule)
    assert model.bin_loss.has_prior and int((model.bin_loss.counts > 0).sum()) > 1
    assert any(not torch.equal(before[k], v) for k, v in model.generator.state_dict().items())
    assert torch.isfinite(trainer.callback_metrics["val/psnr"])


def test_evaluate_sweeps_temperatures_of_classification_models_only():
    bins, unet = build_generator(TINY_BINS), build_generator(TINY_UNET)
    rows = at_temperatures("run/last", bins, [0.2, 1.0])
    assert list(rows) == ["run/last@T=0.2", "run/last@T=1"]
    L = torch.rand(1, 1, 32, 32) * 2 - 1
    bins.eval()
    assert torch.allclose(rows["run/last@T=1"](L), bins.decode(bins.logits(L), (32, 32), 1.0))
    assert list(at_temperatures("run/last", unet, [0.2, 1.0])) == ["run/last"]


def test_colorize_and_export_take_a_temperature_for_classification_models(tmp_path, capsys):
    ckpt = save_checkpoint(TINY_BINS, tmp_path / "bins.ckpt")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    pictures = {}
    for t in (0.1, 1.0):
        assert (
            colorize(
                [
                    str(tmp_path / "a.png"),
                    "--ckpt",
                    str(ckpt),
                    "--out",
                    str(tmp_path / f"t{t}"),
                    "--temperature",
                    str(t),
                ]
            )
            == 0
        )
        pictures[t] = np.asarray(Image.open(tmp_path / f"t{t}" / "a.png"))
    assert not np.array_equal(pictures[0.1], pictures[1.0])

    folder = tmp_path / "vivid"
    assert (
        export(["--ckpt", str(ckpt), "--format", "folder", "--out", str(folder), "--temperature", "0.3", "--fp16"]) == 0
    )
    assert json.loads((folder / "config.json").read_text())["generator"]["temperature"] == 0.3
    assert (folder / "model.safetensors").stat().st_size < 0.6 * 4 * sum(
        p.numel() for p in build_generator(TINY_BINS).parameters()
    )

    plain = save_checkpoint(TINY_UNET, tmp_path / "plain.ckpt")
    assert (
        colorize([str(tmp_path / "a.png"), "--ckpt", str(plain), "--out", str(tmp_path / "x"), "--temperature", "0.3"])
        == 1
    )
    assert "--temperature applies to classification models" in capsys.readouterr().err
    assert not set_temperature(build_generator(TINY_UNET), 0.3)


def test_a_shipped_models_short_name_finds_its_folder_unless_a_local_path_exists(tmp_path, monkeypatch):
    shipped = tmp_path / "pretrained"
    ckpt = save_checkpoint(TINY_UNET, tmp_path / "tiny.ckpt")
    assert export(["--ckpt", str(ckpt), "--format", "folder", "--out", str(shipped / "tiny-colours")]) == 0
    monkeypatch.setattr("colorgan.model_folder.SHIPPED_DIR", shipped)
    monkeypatch.chdir(tmp_path)
    assert resolve_model_path("tiny-colours") == shipped / "tiny-colours"
    assert resolve_model_path("elsewhere/tiny-colours") == Path("elsewhere/tiny-colours")
    (tmp_path / "tiny-colours").mkdir()
    assert resolve_model_path("tiny-colours") == Path("tiny-colours")  # a local folder of that name wins
