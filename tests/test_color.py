"""The Lab conversion: agrees with scikit-image, normalises into [-1, 1], round-trips."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.color import lab2rgb, rgb2lab

from colorgan.color import AB_SCALE, L_SCALE, lab_normalized_to_rgb, rgb_to_lab_normalized, to_uint8


def test_matches_scikit_image_on_random_colours():
    rgb = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    L, ab = rgb_to_lab_normalized(rgb)
    ours = torch.cat([(L + 1) * L_SCALE, ab * AB_SCALE], dim=1).permute(0, 2, 3, 1).numpy()
    ref = rgb2lab(rgb.permute(0, 2, 3, 1).numpy())
    assert np.abs(ours - ref).max() < 0.05  # Lab units; the white points differ in the 4th digit


def test_normalised_range_covers_the_gamut():
    corners = torch.tensor(
        [[[[0, 255, 0, 255, 0, 255, 0, 255]], [[0, 0, 255, 255, 0, 0, 255, 255]], [[0, 0, 0, 0, 255, 255, 255, 255]]]],
        dtype=torch.uint8,
    )
    L, ab = rgb_to_lab_normalized(corners)
    assert L.min() == pytest.approx(-1.0, abs=1e-4) and L.max() == pytest.approx(1.0, abs=1e-4)
    assert ab.abs().max() <= 1.0 and ab.abs().max() > 0.7  # sRGB's chroma reaches about 0.9 * 110


def test_uint8_round_trip_is_exact_after_quantisation():
    rgb = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    back = to_uint8(lab_normalized_to_rgb(*rgb_to_lab_normalized(rgb)))
    assert (back.int() - rgb.int()).abs().max() <= 1


def test_lab_to_rgb_matches_scikit_image():
    rgb = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    L, ab = rgb_to_lab_normalized(rgb)
    lab = torch.cat([(L + 1) * L_SCALE, ab * AB_SCALE], dim=1)[0].permute(1, 2, 0).numpy()
    ours = lab_normalized_to_rgb(L, ab)[0].permute(1, 2, 0).numpy()
    assert np.abs(ours - lab2rgb(lab)).max() < 2e-3


def test_conversion_stays_float32_under_autocast():
    rgb = torch.randint(0, 256, (1, 3, 8, 8), dtype=torch.uint8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        L, ab = rgb_to_lab_normalized(rgb)
        back = lab_normalized_to_rgb(L.bfloat16(), ab.bfloat16())
    assert L.dtype == ab.dtype == back.dtype == torch.float32


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3))
def test_any_rgb_round_trips(rgb):
    x = torch.tensor(rgb, dtype=torch.float32).view(1, 3, 1, 1)
    assert torch.allclose(lab_normalized_to_rgb(*rgb_to_lab_normalized(x)), x, atol=1e-4)


@settings(max_examples=60, deadline=None)
@given(st.floats(-1.0, 1.0), st.floats(-1.0, 1.0), st.floats(-1.0, 1.0))
def test_out_of_gamut_lab_maps_into_unit_rgb(L, a, b):
    rgb = lab_normalized_to_rgb(torch.tensor([[[[L]]]]), torch.tensor([[[[a]], [[b]]]]))
    assert torch.isfinite(rgb).all() and rgb.min() >= 0.0 and rgb.max() <= 1.0


@pytest.mark.parametrize("shape", [(3, 3, 32, 32), (9, 3, 256, 256), (1, 3, 1, 517)])
def test_fast_uint8_path_matches_kornia(shape):
    from kornia.color import rgb_to_lab

    rgb = torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    L, ab = rgb_to_lab_normalized(rgb)  # 9 x 256 x 256 crosses the CPU chunk boundary
    ref = rgb_to_lab(rgb.float() / 255.0)
    assert (L - (ref[:, :1] / L_SCALE - 1)).abs().max() * L_SCALE < 1e-4
    assert (ab - ref[:, 1:] / AB_SCALE).abs().max() * AB_SCALE < 2e-4
    Lf, abf = rgb_to_lab_normalized(rgb.float() / 255.0)  # the float path agrees with the table
    assert (Lf - L).abs().max() < 1e-5 and (abf - ab).abs().max() < 1e-5
