"""BatchNorm running statistics: rolled back when a step is skipped, untouched by the other network's step."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class BatchNormSnapshot:
    """A copy of a network's buffers (its BatchNorm running statistics), taken before each batch.

    A non-finite loss skips the optimizer step, but the forward pass has already moved the
    running statistics, to NaN when the batch held NaN, which would ruin every later
    prediction in eval mode. Restoring them makes a skipped step change nothing. The copy is
    one fused ``_foreach_copy_`` per batch into buffers allocated once.
    """

    def __init__(self) -> None:
        self._live: list[torch.Tensor] = []
        self._saved: list[torch.Tensor] = []

    def take(self, module: nn.Module) -> None:
        live = list(module.buffers())
        if len(live) != len(self._live) or any(a is not b for a, b in zip(live, self._live)):
            self._live, self._saved = live, [torch.empty_like(b) for b in live]  # first batch, or moved
        if live:
            with torch.no_grad():
                torch._foreach_copy_(self._saved, live)

    def restore(self) -> None:
        if self._live:
            with torch.no_grad():
                torch._foreach_copy_(self._live, self._saved)


@contextmanager
def running_stats_frozen(module: nn.Module) -> Iterator[None]:
    """BatchNorm layers of ``module`` normalise with batch statistics but leave their running ones alone.

    The generator's step runs the discriminator on G's output to get a gradient; that forward pass
    must not move D's running statistics, which belong to D's own step (pix2pix's code lets them
    move twice per batch). Turning ``track_running_stats`` off for the call keeps batch statistics
    in train mode (so the gradient is the one D's step saw) and updates nothing.
    """
    layers = [m for m in module.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    for layer in layers:
        layer.track_running_stats = False
    try:
        yield
    finally:
        for layer in layers:
            layer.track_running_stats = True
