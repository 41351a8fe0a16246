"""Finding and safely reading pretrained weights that evaluation can use but never downloads.

Evaluation must run offline, so every optional backbone (FID's Inception, LPIPS's AlexNet) is
looked up as a configured file or in torch.hub's cache; when neither exists the metric is skipped
and the report says why and how to provide the file.
"""

from __future__ import annotations

from pathlib import Path

import torch


class WeightsUnavailable(RuntimeError):
    """Weights a metric needs are not on this machine (or not usable); the message says how to fix it."""


def hub_checkpoint(filename: str) -> Path:
    """Where ``torch.hub`` (and so torchvision and torch-fidelity) keeps a downloaded file."""
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def find_weights(configured: str | None, key: str, url: str) -> Path:
    """``configured`` if set (it must exist), else the cached download of ``url``, else a clear error."""
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise WeightsUnavailable(f"{key}={path} does not exist")
        return path
    cached = hub_checkpoint(url.rsplit("/", 1)[-1])
    if cached.is_file():
        return cached
    raise WeightsUnavailable(
        f"{key} is not set and {cached} is absent (no downloads during evaluation); "
        f"download {url} once and pass {key}=PATH, or put the file in {cached.parent}"
    )


def load_state_dict_file(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    """A state dict read with ``weights_only=True``: tensors only, no pickled code runs."""
    path = Path(path).expanduser()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # refused pickles, corrupt archives, missing files: all unusable here
        raise WeightsUnavailable(
            f"{what} weights {path} could not be read safely ({type(err).__name__}: {err})"
        ) from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsUnavailable(f"{what} weights {path} are not a state dict of tensors")
    return state
