"""Real-world image files: every mode and size loads as upright 8-bit RGB, every broken file is named."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from colorgan.data import images
from colorgan.data.datasets import FolderDataset
from colorgan.data.images import BadImageError, load_image, load_rgb
from tests.messy import READABLE, UNREADABLE, write_messy_folder


@pytest.fixture(scope="module")
def messy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_messy_folder(tmp_path_factory.mktemp("messy"))


@pytest.mark.parametrize("name", sorted(READABLE))
def test_every_readable_file_loads_as_upright_rgb(messy, name):
    rgb, alpha = load_image(messy / name)
    assert rgb.mode == "RGB" and rgb.size == READABLE[name]
    assert (alpha is not None) == (name in {"rgba.png", "palette_transparent.gif"})
    if alpha is not None:
        assert alpha.mode == "L" and alpha.size == rgb.size


def test_modes_keep_their_content(messy):
    px = lambda name, xy: tuple(int(v) for v in np.asarray(load_rgb(messy / name))[xy[1], xy[0]])
    assert px("animated.gif", (5, 5)) == (255, 0, 0)  # the first frame, not the green second one
    assert px("rgb16.png", (0, 0)) == (255, 128, 0)  # 16-bit RGB: 65535, 32768, 0 rescaled
    gray16 = np.asarray(load_rgb(messy / "gray16.png"))
    assert gray16[0, 0, 0] == 0 and gray16[-1, -1, 0] == round(1919 * 34 * 255 / 65535)  # rescaled, not clipped
    assert (gray16[..., 0] == gray16[..., 2]).all()
    cmyk, rgb = np.asarray(load_rgb(messy / "cmyk.jpg"), float), np.asarray(load_rgb(messy / "rgb.jpg"), float)
    assert np.abs(cmyk - rgb).mean() < 8  # CMYK converted to the same picture, not inverted
    # orientation 6: the stored image's bottom-left corner (x=0: red 0, y=max: green 255) is now top-left
    r, g, _ = px("exif_rotated.jpg", (0, 0))
    assert r < 30 and g > 225


@pytest.mark.parametrize("name", sorted(UNREADABLE))
def test_every_unreadable_file_is_named_with_the_reason(messy, name):
    with pytest.raises(BadImageError) as info:
        load_image(messy / name)
    assert info.value.path == str(messy / name)
    assert str(messy / name) in str(info.value) and UNREADABLE[name] in str(info.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(BadImageError, match=r"gone\.jpg: no such file"):
        load_image(tmp_path / "gone.jpg")


def test_pixel_cap_refuses_huge_non_jpeg_before_decoding(tmp_path, monkeypatch):
    Image.new("RGB", (400, 300)).save(tmp_path / "wide.png")
    monkeypatch.setattr(images, "MAX_DECODED_PIXELS", 100_000)
    with pytest.raises(BadImageError, match=r"400 x 300 pixels is more than the 0.1 MP"):
        load_image(tmp_path / "wide.png")
    Image.new("RGB", (3000, 2000)).save(tmp_path / "big.jpg")
    assert load_rgb(tmp_path / "big.jpg", max_side=100).size == (100, 67)  # JPEG: the draft is under the cap


def test_large_png_is_shrunk_on_load(tmp_path):
    Image.fromarray(np.full((1500, 4000, 3), 200, np.uint8)).save(tmp_path / "pano.png", compress_level=1)
    assert load_rgb(tmp_path / "pano.png", max_side=300).size in {(300, 112), (300, 113)}


MEMORY_PROBE = """
import importlib.util, json, resource, sys
from PIL import Image
path, max_side = sys.argv[1], int(sys.argv[2])
spec = importlib.util.spec_from_file_location("images", sys.argv[3])
images = importlib.util.module_from_spec(spec)
spec.loader.exec_module(images)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rgb = images.load_rgb(path, max_side=max_side)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"size": rgb.size, "peak_growth_mb": (after - before) / 1024}))
"""


def test_12000_x_9000_jpeg_decodes_in_bounded_memory(tmp_path):
    """A 108 MP photo is 324 MB as RGB; decoded at 1/8 draft scale it must need far less."""
    path = tmp_path / "huge.jpg"
    make = f"from PIL import Image; Image.new('RGB', (12000, 9000), (200, 120, 40)).save({str(path)!r}, quality=50)"
    subprocess.run([sys.executable, "-c", make], check=True)  # made elsewhere: its memory is not ours
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(path), str(4 * 286), images.__file__],
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(out.stdout)
    assert tuple(result["size"]) == (1144, 858)
    assert result["peak_growth_mb"] < 120, result


def test_folder_dataset_skips_bad_files_and_names_them(messy):
    files = sorted(p for p in messy.iterdir() if p.is_file())
    dataset = FolderDataset(files, image_size=32, load_size=36, train=True)
    for i, path in enumerate(files):
        item = dataset[i]
        assert item["rgb"].shape == (3, 32, 32) and item["rgb"].dtype == torch.uint8
        assert item["bad_index"].item() == (i if path.name in UNREADABLE else -1)
    assert {Path(dataset.files[i]).name for i in dataset._reported} == set(UNREADABLE)

    strict = FolderDataset(files, image_size=32, on_bad_image="error")
    bad = next(i for i, p in enumerate(files) if p.name in UNREADABLE)
    with pytest.raises(BadImageError, match=r"data\.on_bad_image=error") as info:
        strict[bad]
    assert info.value.path == str(files[bad]) and str(info.value).count("cannot read image") == 1


def test_tiny_and_strip_images_fill_the_crop(messy):
    dataset = FolderDataset([messy / "tiny.png", messy / "strip.png"], image_size=64)
    for i in range(2):
        assert dataset[i]["rgb"].shape == (3, 64, 64)


def test_jpeg_above_the_pixel_cap_is_decoded_at_reduced_scale(tmp_path, monkeypatch):
    """Training and colorize alike: a JPEG too big to decode whole is decoded at 1/2, 1/4 or 1/8 scale."""
    Image.new("RGB", (400, 300), (200, 120, 40)).save(tmp_path / "big.jpg")
    monkeypatch.setattr(images, "MAX_DECODED_PIXELS", 10_000)  # 120,000 pixels; a quarter side fits
    decoded = images.decode_image(tmp_path / "big.jpg")
    assert decoded.image.size == (100, 75) and decoded.scale == 4
    assert load_rgb(tmp_path / "big.jpg").size == (100, 75)
    assert images.decode_image(tmp_path / "big.jpg", max_side=20).scale == 8  # max_side asks for less still
    monkeypatch.setattr(images, "MAX_DECODED_PIXELS", 1_000)  # not even 1/8 scale fits
    with pytest.raises(BadImageError, match=r"even at 1/8 scale") as info:
        load_image(tmp_path / "big.jpg")
    assert "save it as JPEG" not in str(info.value)
