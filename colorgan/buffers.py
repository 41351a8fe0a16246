"""Undoing a batch's effect on BatchNorm statistics when its optimizer step is skipped."""

from __future__ import annotations

import torch
from torch import nn


class BufferSnapshot:
    """A copy of a module's buffers (BatchNorm running statistics), taken before each batch.

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
