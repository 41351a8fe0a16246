"""Frechet distances between feature sets, and the Inception-v3 that makes FID comparable.

Features are summarised as running sums (count, sum, sum of outer products) in float64, so a test
set of any size streams through in batches, and every candidate shares one pass over the truth.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch import nn

from colorgan.weights import WeightsUnavailable, load_state_dict_file

# torch-fidelity's port of the TensorFlow FID Inception-v3 (the weights of Heusel et al.'s FID)
INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)


class FeatureStats:
    """Streaming mean and covariance of feature vectors, accumulated in float64."""

    def __init__(self) -> None:
        self.n = 0
        self.sum: torch.Tensor | int = 0  # tensors from the first update on
        self.outer: torch.Tensor | int = 0

    def update(self, features: torch.Tensor) -> None:
        f = features.detach().flatten(1).to("cpu", torch.float64)
        self.n += f.shape[0]
        self.sum += f.sum(dim=0)
        self.outer += f.T @ f

    def mean_cov(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and unbiased covariance (n - 1), as in the reference FID code."""
        if self.n < 2:
            raise ValueError(f"a Frechet distance needs at least 2 feature vectors per set, got {self.n}")
        mean = self.sum / self.n
        cov = (self.outer - self.n * torch.outer(mean, mean)) / (self.n - 1)
        return mean, cov


def _sqrt_psd(matrix: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix by eigen-decomposition."""
    vals, vecs = torch.linalg.eigh(0.5 * (matrix + matrix.T))
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def frechet_distance(
    mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor, sqrt_cov1: torch.Tensor | None = None
) -> float:
    """Between N(mu1, cov1) and N(mu2, cov2): ``|mu1 - mu2|^2 + tr(C1 + C2 - 2 (C1 C2)^(1/2))``, in float64.

    ``tr((C1 C2)^(1/2))`` is computed as ``tr((S C2 S)^(1/2))`` with ``S = C1^(1/2)`` (``sqrt_cov1``,
    computed if not given): the same eigenvalues, but of a symmetric matrix, so it stays real and
    stable when the covariances are singular (fewer samples than feature dimensions).
    """
    mu1, cov1, mu2, cov2 = (t.to(torch.float64) for t in (mu1, cov1, mu2, cov2))
    sqrt_cov1 = _sqrt_psd(cov1) if sqrt_cov1 is None else sqrt_cov1
    middle = sqrt_cov1 @ cov2 @ sqrt_cov1
    tr_sqrt = torch.linalg.eigvalsh(0.5 * (middle + middle.T)).clamp_min(0).sqrt().sum()
    value = (mu1 - mu2).pow(2).sum() + torch.trace(cov1) + torch.trace(cov2) - 2 * tr_sqrt
    return max(float(value), 0.0)


class FrechetReference:
    """A reference set (the ground truth) whose covariance square root is computed once for all candidates."""

    def __init__(self, stats: FeatureStats) -> None:
        self.mean, self.cov = stats.mean_cov()
        self.sqrt_cov = _sqrt_psd(self.cov)

    def distance(self, other: FeatureStats) -> float:
        return frechet_distance(self.mean, self.cov, *other.mean_cov(), self.sqrt_cov)


def frechet_distance_stats(a: FeatureStats, b: FeatureStats) -> float:
    return FrechetReference(a).distance(b)


FID_FEATURES = (64, 192, 768, 2048)  # the Inception layers torchmetrics exposes; 2048 is the published FID's


def build_inception(weights: str | Path, device: torch.device, features: int = 2048) -> nn.Module:
    """torchmetrics' FID Inception-v3 (pool features, uint8 RGB in, resized to 299 inside).

    torch-fidelity unpickles the weights file it is given with ``weights_only=False``, so the file is
    first read here with ``weights_only=True`` and a copy holding only those tensors is what it loads.
    """
    from torchmetrics.image.fid import NoTrainInceptionV3
    from torchmetrics.utilities.imports import _TORCH_FIDELITY_AVAILABLE

    if not _TORCH_FIDELITY_AVAILABLE:
        raise WeightsUnavailable("FID needs the torch-fidelity package: pip install torch-fidelity")
    if features not in FID_FEATURES:
        raise ValueError(f"eval.fid_features must be one of {FID_FEATURES}, got {features}")
    state = load_state_dict_file(weights, "Inception")
    with tempfile.TemporaryDirectory() as tmp:
        safe_copy = Path(tmp) / "inception.pt"
        torch.save(state, safe_copy)
        try:
            net = NoTrainInceptionV3(
                name="inception-v3-compat", features_list=[str(features)], feature_extractor_weights_path=str(safe_copy)
            )
        except RuntimeError as err:
            raise WeightsUnavailable(
                f"{weights} is not torch-fidelity's FID Inception-v3 ({str(err).splitlines()[0]})"
            ) from err
    return net.to(device).eval()
