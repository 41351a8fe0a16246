"""Colour as classification (Zhang et al. 2016, "Colorful Image Colorization").

Regression to ab averages the plausible colours of an object into brown; a distribution over
quantised ab keeps them apart. The generator predicts logits over the in-gamut ab bins of a grid,
and ab is decoded from them by the *annealed mean*: the mean of ``softmax(logits / T)``. ``T = 1`` is
the mean (faithful, PSNR-friendly), ``T -> 0`` the mode (vivid, riskier); the paper uses 0.38. One
trained model therefore gives a whole PSNR-versus-colourfulness curve, chosen at inference.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from kornia.color import lab_to_rgb
from torch import nn

from colorgan.color import AB_SCALE


@functools.lru_cache(maxsize=4)
def in_gamut_bins(grid: float = 10.0) -> torch.Tensor:
    """(Q, 2) centres of the ``grid``-sized ab cells that hold an sRGB colour at some lightness, in Lab units.

    A cell counts when any of 5 x 5 points across it, at any of 101 lightnesses, maps into the sRGB
    cube: 262 cells for grid 10 (Zhang et al. take 313 from ImageNet's pixels, which include colours
    just outside sRGB).
    """
    if not 1.0 <= grid <= 55.0:
        raise ValueError(f"model.generator.bin_grid must be in [1, 55] Lab units, got {grid}")
    with torch.device("cpu"):  # real numbers even when called while a network is laid out on the meta device
        return _in_gamut_bins(grid)


def _in_gamut_bins(grid: float) -> torch.Tensor:
    half = int(AB_SCALE // grid)
    centres = torch.arange(-half, half + 1, dtype=torch.float64) * grid
    a, b = (t.flatten() for t in torch.meshgrid(centres, centres, indexing="ij"))
    lightness = torch.linspace(0.0, 100.0, 101, dtype=torch.float64)
    offsets = torch.linspace(-grid / 2, grid / 2, 5, dtype=torch.float64)
    inside = torch.zeros(len(a), dtype=torch.bool)
    for da in offsets:
        for db in offsets:
            lab = torch.stack(
                [lightness.repeat_interleave(len(a)), (a + da).repeat(len(lightness)), (b + db).repeat(len(lightness))]
            ).view(1, 3, -1, 1)
            rgb = lab_to_rgb(lab.float(), clip=False).view(3, len(lightness), len(a))
            inside |= ((rgb >= 0) & (rgb <= 1)).all(0).any(0)
    return torch.stack([a[inside], b[inside]], dim=1).float()


class ColorBinsGenerator(nn.Module):
    """A backbone that outputs one logit per ab bin, decoded to normalised ab by the annealed mean.

    ``forward(L)`` returns ab like every other generator, so inference, export, the discriminator and
    the metrics need nothing new; training reads ``logits`` for the classification loss.
    """

    def __init__(self, backbone: nn.Module, bin_grid: float = 10.0, temperature: float = 0.38) -> None:
        super().__init__()
        check_temperature(temperature)
        self.backbone = backbone
        self.bin_grid = bin_grid
        self.temperature = temperature
        # not saved: the grid rebuilds them, and checkpoints stay the backbone's weights alone
        self.register_buffer("bins", in_gamut_bins(bin_grid) / AB_SCALE, persistent=False)

    @property
    def num_bins(self) -> int:
        return len(self.bins)

    def logits(self, L: torch.Tensor) -> torch.Tensor:
        return self.backbone(L)

    def decode(self, logits: torch.Tensor, size: tuple[int, int], temperature: float | None = None) -> torch.Tensor:
        """Annealed mean: softmax(logits / T) weighted over the bin centres, in normalised ab, upsampled to ``size``.

        The backbone predicts below full resolution (``output_stride``); ab is smooth, so bilinear
        upsampling of the decoded colour loses little (Zhang et al. upsample by 4).
        """
        t = self.temperature if temperature is None else temperature
        probs = torch.softmax(logits.float() / t, dim=1)
        ab = torch.einsum("bqhw,qc->bchw", probs, self.bins)
        if tuple(ab.shape[-2:]) == tuple(size):
            return ab
        return F.interpolate(ab, size=size, mode="bilinear", align_corners=False)

    def forward(self, L: torch.Tensor) -> torch.Tensor:
        return self.decode(self.logits(L), L.shape[-2:])


class AtTemperature(nn.Module):
    """A classification generator decoded at a fixed temperature, sharing its weights (evaluate.py's T sweep)."""

    def __init__(self, generator: ColorBinsGenerator, temperature: float) -> None:
        super().__init__()
        check_temperature(temperature)
        self.generator, self.temperature = generator, float(temperature)

    def forward(self, L: torch.Tensor) -> torch.Tensor:
        return self.generator.decode(self.generator.logits(L), L.shape[-2:], self.temperature)


def check_temperature(temperature: float) -> None:
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not 0.0 < temperature <= 10.0:
        raise ValueError(f"the annealed-mean temperature must be in (0, 10], got {temperature}")


def set_temperature(generator: nn.Module, temperature: float | None) -> bool:
    """Set the decoding temperature of a classification generator; False for a regression one."""
    if not isinstance(generator, ColorBinsGenerator):
        return False
    if temperature is not None:
        check_temperature(temperature)
        generator.temperature = float(temperature)
    return True
