"""colorgan.inference: any size and mode of image in, its own L plus colour out."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from skimage.color import rgb2lab
from torch import nn

from colorgan.color import keep_lightness_rgb, lab_normalized_to_rgb, rgb_to_lab_normalized, to_uint8
from colorgan.inference import MODES, colorize_image, colorize_images, window_starts
from colorgan.models import build_generator

TINY_UNET = {"name": "unet", "image_size": 32, "ngf": 8}

pytestmark = pytest.mark.usefixtures("one_thread")


def lightness(image: Image.Image) -> np.ndarray:
    """L* of an image by scikit-image, independent of colorgan's own conversion."""
    return rgb2lab(np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0)[..., 0]


def chroma(image: Image.Image) -> np.ndarray:
    ab = rgb2lab(np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0)[..., 1:]
    return np.hypot(ab[..., 0], ab[..., 1])


def photo(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A colourful H x W x 3 uint8 picture: smooth gradients plus some noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx / max(width, 1), yy / max(height, 1), 0.5 + 0.5 * np.sin(xx / 7.0)], axis=-1)
    noisy = base * 200 + rng.integers(0, 55, size=(height, width, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8)


class StrongColors(nn.Module):
    """A per-pixel 'generator' with saturated, mostly out-of-gamut ab: the hard case for keeping L."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(0.95))
        self.calls: list[tuple[int, ...]] = []

    def forward(self, L: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(L.shape))
        return torch.cat([torch.sin(7 * L), torch.cos(5 * L)], dim=1) * self.scale


class Recording(nn.Module):
    """Wraps a generator and records the shape of every batch it is given."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls: list[tuple[int, ...]] = []

    def forward(self, L: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(L.shape))
        return self.inner(L)


@pytest.fixture(scope="module")
def unet() -> nn.Module:
    torch.manual_seed(0)
    return build_generator(TINY_UNET).eval()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("width", "height"), [(1, 1), (517, 33), (40, 600), (97, 64)])
def test_any_size_keeps_size_and_lightness(unet, mode, width, height):
    rgb = Image.fromarray(photo(width, height))
    for image in (rgb, rgb.convert("L")):
        out = colorize_image(unet, image, 32, mode)
        assert out.size == image.size and out.mode == "RGB"
        assert np.abs(lightness(out) - lightness(image)).max() <= 1.0


@pytest.mark.parametrize("mode", MODES)
def test_saturated_predictions_do_not_change_lightness(mode):
    image = Image.fromarray(photo(90, 70, seed=3))
    L, _ = rgb_to_lab_normalized(torch.from_numpy(np.array(image)).permute(2, 0, 1)[None])
    clipped = to_uint8(lab_normalized_to_rgb(L, StrongColors()(L)))[0].permute(1, 2, 0).numpy()
    assert np.abs(lightness(Image.fromarray(clipped)) - lightness(image)).max() > 5  # plain clipping moves L

    out = colorize_image(StrongColors(), image, 32, mode)
    assert np.abs(lightness(out) - lightness(image)).max() <= 1.0
    assert chroma(out).mean() > 20  # the colour is reduced only as far as needed, not dropped


def test_keep_lightness_rgb_leaves_in_gamut_colours_alone():
    L = torch.linspace(-0.8, 0.8, 50).view(1, 1, 5, 10)
    ab = torch.full((1, 2, 5, 10), 0.05)
    torch.testing.assert_close(keep_lightness_rgb(L, ab), lab_normalized_to_rgb(L, ab))


def test_full_mode_at_the_model_size_is_the_plain_prediction():
    image = Image.fromarray(photo(32, 32, seed=1))
    L, _ = rgb_to_lab_normalized(torch.from_numpy(np.array(image)).permute(2, 0, 1)[None])
    gen = StrongColors()
    expected = to_uint8(keep_lightness_rgb(L, gen(L)))[0].permute(1, 2, 0).numpy().astype(int)
    for mode in MODES:
        got = np.asarray(colorize_image(gen, image, 32, mode)).astype(int)
        assert np.abs(got - expected).max() <= 1


def test_tiles_blend_to_the_full_resolution_prediction():
    """With a per-pixel model the windows agree, so blending must reproduce the prediction exactly."""
    image = Image.fromarray(photo(100, 77, seed=2))
    L, _ = rgb_to_lab_normalized(torch.from_numpy(np.array(image)).permute(2, 0, 1)[None])
    gen = StrongColors()
    expected = to_uint8(keep_lightness_rgb(L, gen(L)))[0].permute(1, 2, 0).numpy().astype(int)
    gen.calls.clear()
    got = np.asarray(colorize_image(gen, image, 32, "tiles", batch_size=4, overlap=0.25)).astype(int)
    assert np.abs(got - expected).max() <= 1
    windows = len(window_starts(77, 32, 24)) * len(window_starts(100, 32, 24))
    assert [c[0] for c in gen.calls] == [4] * (windows // 4) + ([windows % 4] if windows % 4 else [])
    assert all(c[1:] == (1, 32, 32) for c in gen.calls)


def test_window_starts_cover_the_image_with_the_overlap():
    for length in (1, 31, 32, 33, 100, 517):
        starts = window_starts(length, min(32, length), 24)
        assert starts[0] == 0 and starts[-1] + min(32, length) == length
        assert all(0 < b - a <= 24 for a, b in itertools.pairwise(starts))


def test_full_mode_batches_images_and_never_runs_the_model_at_full_size(unet):
    recording = Recording(unet)
    images = [Image.fromarray(photo(w, h)) for w, h in ((1200, 900), (50, 20), (1, 1), (33, 517), (64, 64))]
    outs = colorize_images(recording, images, 32, "full", batch_size=2)
    assert recording.calls == [(2, 1, 32, 32), (2, 1, 32, 32), (1, 1, 32, 32)]
    assert [o.size for o in outs] == [i.size for i in images]


def test_alpha_and_modes_of_in_memory_images(unet):
    rgba = np.dstack([photo(30, 20), np.random.default_rng(0).integers(0, 256, (20, 30), dtype=np.uint8)])
    out = colorize_image(unet, Image.fromarray(rgba), 32)
    assert out.mode == "RGBA" and np.array_equal(np.asarray(out)[..., 3], rgba[..., 3])

    gray16 = (np.arange(20 * 30, dtype=np.uint16).reshape(20, 30) * 100).astype(np.uint16)
    out16 = colorize_image(unet, Image.fromarray(gray16), 32)
    expected = Image.fromarray((gray16 / 65535 * 255 + 0.5).astype(np.uint8))
    assert out16.size == (30, 20)
    assert np.abs(lightness(out16) - lightness(expected)).max() <= 1.0
    assert np.array_equal(np.asarray(colorize_image(unet, gray16, 32)), np.asarray(out16))  # arrays as images


def test_bad_arguments_are_refused(unet):
    image = Image.new("L", (8, 8))
    with pytest.raises(ValueError, match="mode"):
        colorize_image(unet, image, 32, "mosaic")
    with pytest.raises(ValueError, match="size"):
        colorize_image(unet, image, 0)
    with pytest.raises(ValueError, match="overlap"):
        colorize_image(unet, image, 32, "tiles", overlap=1.0)


@settings(max_examples=30, deadline=None)
@given(width=st.integers(1, 80), height=st.integers(1, 80), mode=st.sampled_from(MODES))
def test_property_output_has_the_input_size_and_lightness(unet, width, height, mode):
    image = Image.fromarray(photo(width, height, seed=width * 100 + height)).convert("L")
    out = colorize_image(unet, image, 32, mode)
    assert out.size == (width, height)
    assert np.abs(lightness(out) - lightness(image)).max() <= 1.0
