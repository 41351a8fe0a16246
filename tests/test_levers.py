"""Inference-time levers (colorgan/models/levers.py): the chroma gain and the self-ensemble, on their own,
in evaluate.py (tests/test_evaluate.py) and in colorgan-colorize (--chroma-gain, --self-ensemble)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from colorgan.apps.colorize import main as colorize
from colorgan.models.levers import ChromaGain, Reused, SelfEnsemble
from tests.test_colorize import save_checkpoint
from tests.test_inference import TINY_UNET

pytestmark = pytest.mark.usefixtures("one_thread")


class Pointwise(nn.Module):
    """ab a fixed function of each pixel's L: the same wherever the pixel is, mirrored or shifted."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor([0.9, -0.6]).view(1, 2, 1, 1))
        self.calls = 0

    def forward(self, L: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return torch.tanh(self.weight * L)


class LeftHeavy(Pointwise):
    """Colour that grows toward the right edge: not what its mirror image predicts."""

    def forward(self, L: torch.Tensor) -> torch.Tensor:
        ramp = torch.linspace(0, 1, L.shape[-1]).view(1, 1, 1, -1)
        return super().forward(L) * ramp


def test_chroma_gain_scales_ab_within_its_range_and_zero_is_gray():
    L = torch.rand(2, 1, 8, 8) * 2 - 1
    base = Pointwise()
    assert torch.equal(ChromaGain(base, 0.0)(L), torch.zeros(2, 2, 8, 8))
    assert torch.allclose(ChromaGain(base, 0.5)(L), 0.5 * base(L))
    strong = ChromaGain(base, 3.0)(L)
    assert strong.abs().max() <= 1.0 and (strong.abs() == 1.0).any()
    for bad in (-0.1, 4.5, True):
        with pytest.raises(ValueError, match="chroma gain must be in"):
            ChromaGain(base, bad)


def test_the_gains_of_one_model_share_one_forward_pass_per_batch():
    base = Pointwise()
    shared = Reused(base)
    rows = [ChromaGain(shared, g) for g in (0.5, 1.0, 2.0)]
    L = torch.rand(2, 1, 8, 8)
    for row in rows:
        row(L)
    assert base.calls == 1
    same_values = L.clone()  # a new batch, even one with the same pixels, is computed again
    rows[0](same_values)
    assert base.calls == 2


def test_self_ensemble_keeps_a_shift_and_mirror_invariant_prediction_and_averages_the_views():
    L = torch.rand(2, 1, 9, 12) * 2 - 1
    pointwise = Pointwise()
    ensembled = SelfEnsemble(pointwise)(L)
    assert ensembled.shape == (2, 2, 9, 12)
    inner = (..., slice(2, -2), slice(2, -2))  # the 2-px border takes the nearest view's colour
    assert torch.allclose(ensembled[inner], pointwise(L)[inner], atol=1e-6)
    assert pointwise.calls == 1 + 10

    skewed = LeftHeavy()
    mirrored_mean = SelfEnsemble(skewed)(L)
    single = skewed(L)
    # the views disagree, so the mean is not any one of them: it is symmetric in left and right
    assert not torch.allclose(mirrored_mean, single, atol=1e-3)
    assert torch.allclose(mirrored_mean[inner], SelfEnsemble(skewed)(L.flip(-1)).flip(-1)[inner], atol=1e-5)


def test_self_ensemble_of_an_image_smaller_than_the_shift_uses_the_mirror_alone():
    L = torch.rand(1, 1, 2, 2)
    skewed = LeftHeavy()
    assert torch.allclose(SelfEnsemble(skewed)(L), 0.5 * (skewed(L) + skewed(L.flip(-1)).flip(-1)))


def test_colorize_takes_a_chroma_gain_and_a_self_ensemble(tmp_path, capsys):
    ckpt = save_checkpoint(TINY_UNET, tmp_path / "tiny.ckpt")
    rgb = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    pictures = {}
    for name, flags in {"plain": [], "gray": ["--chroma-gain", "0"], "ensemble": ["--self-ensemble"]}.items():
        assert colorize([str(tmp_path / "a.png"), "--ckpt", str(ckpt), "--out", str(tmp_path / name), *flags]) == 0
        pictures[name] = np.asarray(Image.open(tmp_path / name / "a.png")).astype(int)
    gray = pictures["gray"]
    assert np.abs(gray - gray.mean(axis=2, keepdims=True)).max() <= 1  # no colour left: R = G = B
    assert not np.array_equal(pictures["plain"], gray)
    assert not np.array_equal(pictures["plain"], pictures["ensemble"])
    too_strong = ["--chroma-gain", "9"]
    assert colorize([str(tmp_path / "a.png"), "--ckpt", str(ckpt), "--out", str(tmp_path / "x"), *too_strong]) == 1
    assert "--chroma-gain must be in [0, 4]" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_diversity_draws_two_fresh_predictions_through_a_shared_forward_pass():
    """eval.diversity with eval.chroma_gains: the two stochastic draws are not the cached prediction twice."""
    from colorgan.evaluate.evaluator import diversity

    class Noisy(nn.Module):
        def forward(self, L: torch.Tensor) -> torch.Tensor:
            return torch.rand(L.shape[0], 2, *L.shape[-2:]) - 0.5

    row = ChromaGain(Reused(Noisy()), 1.0)
    L = torch.rand(2, 1, 8, 8)
    row(L)  # the prediction of the batch, now held by Reused
    assert (diversity(row, L) > 0).all()
