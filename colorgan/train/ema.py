"""An exponential moving average of the generator's weights (not the discriminator's).

GAN generators oscillate from step to step; the average of their recent weights is a smoother,
usually better colorizer (Karras et al. 2018, Yazici et al. 2019). It lives inside the module, so
checkpoints save it and a resume restores it; validation, evaluation, colorize and export use it
when present.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class GeneratorEMA(nn.Module):
    """``module`` holds the averaged copy: ema = decay * ema + (1 - decay) * weights, per generator step.

    The first steps use ``min(decay, (1 + n) / (10 + n))`` so the average is not dominated by the
    weights it started from. Integer buffers (BatchNorm's batch counts) are copied, not averaged.
    """

    def __init__(self, generator: nn.Module, decay: float) -> None:
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ValueError(f"model.ema_decay must be in (0, 1), e.g. 0.999, got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(generator).requires_grad_(False)  # only ever run for inference
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, generator: nn.Module) -> None:
        n = int(self.updates)
        decay = min(self.decay, (1 + n) / (10 + n))
        averaged, current = [], []
        for ema, now in zip(self.module.state_dict().values(), generator.state_dict().values()):
            if ema.is_floating_point():
                averaged.append(ema)
                current.append(now.to(ema.dtype))
            else:
                ema.copy_(now)
        torch._foreach_lerp_(averaged, current, 1.0 - decay)
        self.updates += 1
