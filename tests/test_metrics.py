"""Per-image metrics against reference implementations, and the Frechet distance's sanity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import linalg
from skimage.color import deltaE_ciede2000
from torchmetrics.functional.image import structural_similarity_index_measure
from torchmetrics.image.fid import _compute_fid

from colorgan.color import rgb_to_lab_normalized
from colorgan.evaluate.evaluator import GrayBaseline
from colorgan.evaluate.fid import FeatureStats, frechet_distance, frechet_distance_stats
from colorgan.evaluate.metrics import (
    Rendered,
    build_lpips,
    ciede2000,
    colorfulness,
    delta_colorfulness,
    delta_e2000,
    lpips_per_image,
    psnr_uint8,
    ssim_uint8,
)
from colorgan.evaluate.probe import gray_version
from colorgan.weights import WeightsUnavailable


def random_lab(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack(
        [
            torch.rand(n, generator=g) * 100,
            torch.rand(n, generator=g) * 256 - 128,
            torch.rand(n, generator=g) * 256 - 128,
        ],
        dim=1,
    )


def as_image(lab: torch.Tensor) -> torch.Tensor:
    """(N, 3) Lab -> (1, 3, N, 1), the (B, 3, H, W) layout the metrics take."""
    return lab.T[None, :, :, None]


def test_ciede2000_matches_scikit_image_on_random_lab():
    lab1, lab2 = random_lab(20000, 0), random_lab(20000, 1)
    lab2[:500, 1:] = 0  # neutral colours: hue undefined, handled by a special case
    lab1[500:1000] = lab2[500:1000]  # identical pairs
    lab2[1000:1500, 1:] = lab1[1000:1500, 1:] * 0.999  # nearly the same hue
    angle = torch.linspace(-0.5, 0.5, 500)  # hues on both sides of the 0 / 2 pi seam
    lab1[1500:2000, 1:] = 40 * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    lab2[1500:2000, 1:] = 30 * torch.stack([torch.cos(angle.flip(0)), torch.sin(angle.flip(0))], dim=1)
    ours = ciede2000(as_image(lab1), as_image(lab2))[0, :, 0].numpy()
    ref = deltaE_ciede2000(lab1.double().numpy(), lab2.double().numpy())
    np.testing.assert_allclose(ours, ref, atol=1e-3, rtol=0)
    assert (ours[500:1000] == 0).all()


@pytest.mark.parametrize(
    ("lab1", "lab2", "expected"),
    [  # Sharma, Wu and Dalal (2005), table 1: pairs 1, 7 and 17
        ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
        ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),
        ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),
    ],
)
def test_ciede2000_reproduces_the_published_test_pairs(lab1, lab2, expected):
    value = ciede2000(as_image(torch.tensor([lab1])), as_image(torch.tensor([lab2]))).item()
    assert value == pytest.approx(expected, abs=1e-4)


def test_delta_e_is_a_mean_per_image():
    lab1 = random_lab(2 * 4 * 4, 3).T.reshape(3, 2, 4, 4).permute(1, 0, 2, 3)
    lab2 = random_lab(2 * 4 * 4, 4).T.reshape(3, 2, 4, 4).permute(1, 0, 2, 3)
    per_image = delta_e2000(lab1, lab2)
    assert per_image.shape == (2,)
    for i in range(2):
        ref = deltaE_ciede2000(lab2[i].permute(1, 2, 0).double().numpy(), lab1[i].permute(1, 2, 0).double().numpy())
        assert per_image[i].item() == pytest.approx(ref.mean(), abs=1e-4)
    assert delta_e2000(lab1, lab1).abs().max() == 0


def test_delta_cf_is_the_absolute_colourfulness_gap():
    g = torch.Generator().manual_seed(0)
    colourful = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8, generator=g)
    gray = colourful.float().mean(dim=1, keepdim=True).round().to(torch.uint8).expand(-1, 3, -1, -1)
    assert colorfulness(gray).abs().max() < 1e-4
    gap = delta_colorfulness(gray, colourful)
    torch.testing.assert_close(gap, colorfulness(colourful), atol=1e-4, rtol=0)
    torch.testing.assert_close(gap, delta_colorfulness(colourful, gray))
    assert delta_colorfulness(colourful, colourful).abs().max() == 0


def test_the_gray_baseline_is_one_picture_wherever_it_is_scored():
    """Rendered.gray: evaluation's gray row, the probe's gray accuracy and a gray prediction are the same pixels."""
    rgb = torch.randint(0, 256, (6, 3, 16, 16), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    L, _ = rgb_to_lab_normalized(rgb)
    gray = Rendered.gray(L)
    assert torch.equal(gray.ab, torch.zeros(6, 2, 16, 16))
    assert torch.equal(gray.rgb, gray_version(rgb))
    assert torch.equal(gray.rgb, Rendered.from_lab(L, GrayBaseline()(L)).rgb)
    spread = gray.rgb.int().amax(dim=1) - gray.rgb.int().amin(dim=1)
    assert spread.max() <= 1  # R = G = B up to rounding: no colour at all


@pytest.mark.parametrize("shape", [(4, 3, 32, 32), (2, 3, 40, 24)])
def test_ssim_equals_torchmetrics(shape):
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)
    b = (a.int() + torch.randint(-40, 40, shape, generator=g)).clamp(0, 255).to(torch.uint8)
    ref = structural_similarity_index_measure(a.float() / 255, b.float() / 255, data_range=1.0, reduction="none")
    torch.testing.assert_close(ssim_uint8(a, b), ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(ssim_uint8(a, a), torch.ones(shape[0]))


def test_psnr_of_a_known_error():
    a = torch.full((1, 3, 4, 4), 100, dtype=torch.uint8)
    b = a + 10  # MSE 100 -> 10 log10(255^2 / 100)
    assert psnr_uint8(a, b).item() == pytest.approx(10 * np.log10(255**2 / 100), abs=1e-4)
    assert psnr_uint8(a, a).item() == 100.0


@pytest.fixture(scope="module")
def alexnet_features_file(tmp_path_factory):
    """torchvision AlexNet's ``features.*`` tensors at random init: the layout of the ImageNet file."""
    import torchvision

    state = {
        k: v for k, v in torchvision.models.alexnet(weights=None).state_dict().items() if k.startswith("features.")
    }
    path = tmp_path_factory.mktemp("lpips") / "alexnet.pth"
    torch.save(state, path)
    return path


def test_lpips_from_a_local_backbone_file(alexnet_features_file):
    model = build_lpips("alex", alexnet_features_file, torch.device("cpu"))
    conv0 = torch.load(alexnet_features_file, weights_only=True)["features.0.weight"]
    torch.testing.assert_close(model.net.slice1[0].weight, conv0)  # the file's weights, not a fresh init
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8, generator=g)
    b = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8, generator=g)
    same, diff = lpips_per_image(model, a, a), lpips_per_image(model, a, b)
    assert same.shape == diff.shape == (3,)
    assert same.abs().max() < 1e-6 and (diff > 0).all()


def test_lpips_refuses_a_file_of_the_wrong_network(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"features.0.weight": torch.zeros(4, 3, 3, 3)}, path)
    with pytest.raises(WeightsUnavailable, match="not torchvision's alex"):
        build_lpips("alex", path, torch.device("cpu"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsUnavailable, match="could not be read safely"):
        build_lpips("alex", tmp_path / "junk.pth", torch.device("cpu"))


def random_features(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) @ torch.randn(d, d, generator=g, dtype=torch.float64)


def stats_of(features: torch.Tensor, batch: int = 7) -> FeatureStats:
    stats = FeatureStats()
    for i in range(0, len(features), batch):
        stats.update(features[i : i + batch])
    return stats


def test_feature_stats_stream_to_the_full_set_mean_and_covariance():
    f = random_features(50, 6, 0)
    mean, cov = stats_of(f).mean_cov()
    torch.testing.assert_close(mean, f.mean(dim=0))
    torch.testing.assert_close(cov, torch.cov(f.T))
    with pytest.raises(ValueError, match="at least 2"):
        stats_of(f[:1]).mean_cov()


def test_frechet_distance_of_identical_sets_is_zero():
    f = random_features(200, 8, 1)
    assert frechet_distance_stats(stats_of(f), stats_of(f)) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_of_a_shifted_set_is_the_squared_shift():
    f = random_features(200, 8, 2)
    shift = torch.arange(8, dtype=torch.float64) / 4
    assert frechet_distance_stats(stats_of(f), stats_of(f + shift)) == pytest.approx(
        shift.pow(2).sum().item(), rel=1e-6
    )


def test_frechet_distance_matches_scipy_and_torchmetrics():
    a, b = random_features(300, 10, 3), random_features(300, 10, 4) * 0.5 + 1
    (mu1, c1), (mu2, c2) = stats_of(a).mean_cov(), stats_of(b).mean_cov()
    ours = frechet_distance(mu1, c1, mu2, c2)
    covmean = linalg.sqrtm(c1.numpy() @ c2.numpy()).real
    scipy_ref = ((mu1 - mu2) ** 2).sum().item() + np.trace(c1.numpy() + c2.numpy() - 2 * covmean)
    assert ours == pytest.approx(scipy_ref, rel=1e-6)
    assert ours == pytest.approx(_compute_fid(mu1, c1, mu2, c2).item(), rel=1e-6)


def test_frechet_distance_stays_finite_with_fewer_samples_than_dimensions():
    a, b = random_features(5, 16, 5), random_features(5, 16, 6)
    value = frechet_distance_stats(stats_of(a), stats_of(b))
    assert np.isfinite(value) and value > 0
