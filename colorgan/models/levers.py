"""Inference-time levers on any trained generator: a chroma gain and a self-ensemble.

Both wrap the generator without touching its weights, so one trained model gives several rows in
evaluate.py (``eval.chroma_gains``, ``eval.self_ensemble``) and colorize applies them on request
(``--chroma-gain``, ``--self-ensemble``). docs/evaluation.md measures what each does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MAX_CHROMA_GAIN = 4.0
ENSEMBLE_SHIFT = 2  # px: the views are the image and its mirror, each as is and shifted by this in 4 directions


def check_chroma_gain(gain: float) -> float:
    if isinstance(gain, bool) or not isinstance(gain, int | float) or not 0.0 <= gain <= MAX_CHROMA_GAIN:
        raise ValueError(f"the chroma gain must be in [0, {MAX_CHROMA_GAIN:g}] (1 = as trained, 0 = gray), got {gain}")
    return float(gain)


class Reused(nn.Module):
    """The generator's ab for the batch it last saw, so several levers on one model cost one forward pass.

    It holds that batch, so its memory cannot be reused by another batch while the answer is kept.
    """

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, L: torch.Tensor) -> torch.Tensor:
        if self._last is None or self._last[0] is not L:
            self._last = (L, self.generator(L))
        return self._last[1]


class ChromaGain(nn.Module):
    """ab times ``gain``, within the ab range: below 1 holds colour back toward gray, above 1 saturates.

    A regression model's colours hedge between the plausible ones, so their strength is a choice:
    PSNR prefers them a little weaker, colourfulness stronger (chosen on validation, not retrained).
    """

    def __init__(self, generator: nn.Module, gain: float) -> None:
        super().__init__()
        self.generator, self.gain = generator, check_chroma_gain(gain)

    def forward(self, L: torch.Tensor) -> torch.Tensor:
        return (self.generator(L) * self.gain).clamp(-1.0, 1.0)


class SelfEnsemble(nn.Module):
    """The mean ab over 10 views of the image: itself and its mirror, each as is and shifted by 2 px four ways.

    The mirror and the shifted copies are images the model was trained on (flips and random
    translations), so each view is an equally good guess; their mean has less of the model's own
    noise (EDSR's "self-ensemble"). Shifts are reflect-padded in and cropped back out; 10 times the compute.
    """

    def __init__(self, generator: nn.Module, shift: int = ENSEMBLE_SHIFT) -> None:
        super().__init__()
        self.generator, self.shift = generator, int(shift)

    def forward(self, L: torch.Tensor) -> torch.Tensor:
        s = self.shift
        height, width = L.shape[-2:]
        if s >= min(height, width):  # too small to shift by reflection: the mirror alone
            return 0.5 * (self.generator(L) + self.generator(L.flip(-1)).flip(-1))
        padded = F.pad(L, (s, s, s, s), mode="reflect")
        total = torch.zeros((), device=L.device)
        for dy, dx in ((0, 0), (s, 0), (-s, 0), (0, s), (0, -s)):
            view = padded[..., s + dy : s + dy + height, s + dx : s + dx + width]
            for mirrored in (False, True):
                ab = self.generator(view.flip(-1) if mirrored else view).float()
                ab = ab.flip(-1) if mirrored else ab
                # back into place: the border the shift pushed out is the nearest predicted colour
                ab = F.pad(ab, (s, s, s, s), mode="replicate")[..., s - dy : s - dy + height, s - dx : s - dx + width]
                total = total + ab
        return total / 10.0


def with_levers(generator: nn.Module, chroma_gain: float = 1.0, self_ensemble: bool = False) -> nn.Module:
    """The generator with the self-ensemble and then the chroma gain around it (neither touches its weights)."""
    if self_ensemble:
        generator = SelfEnsemble(generator)
    return generator if chroma_gain == 1.0 else ChromaGain(generator, chroma_gain)
