"""Pretrained weight files (Inception, LPIPS, ImageNet ResNet-18): a configured file or torch.hub's cache.

Evaluation never downloads: weights are looked up as a configured file or in torch.hub's cache, so
evaluation runs offline and says how to provide what is missing. Each file is read safely (no pickled code).
"""

from __future__ import annotations

from pathlib import Path

import torch

from colorgan.files import UnreadableFile, load_torch_file


class WeightsUnavailable(UnreadableFile):
    """Weights a metric needs are not on this machine (or not usable); the message says how to fix it."""


def hub_cache_file(url_or_name: str) -> Path:
    """Where ``torch.hub`` (and so torchvision and torch-fidelity) keeps a downloaded file."""
    return Path(torch.hub.get_dir()) / "checkpoints" / url_or_name.rsplit("/", 1)[-1]


def find_weights(configured: str | None, key: str, url: str) -> Path:
    """``configured`` if set (it must exist), else the cached download of ``url``, else a clear error."""
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise WeightsUnavailable(f"{key}={path} does not exist")
        return path
    cached = hub_cache_file(url)
    if cached.is_file():
        return cached
    raise WeightsUnavailable(
        f"{key} is not set and {cached} is absent (no downloads during evaluation); "
        f"download {url} once and pass {key}=PATH, or put the file in {cached.parent}"
    )


def load_state_dict_file(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    """A state dict of ``what`` (e.g. "Inception") read safely; a ``{"state_dict": ...}`` wrapper is unwrapped."""
    state = load_torch_file(path, f"{what} weights file", "download it again", WeightsUnavailable)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsUnavailable(f"{what} weights {path} are not a state dict of tensors")
    return state
