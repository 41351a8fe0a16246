"""Inputs and options with bounds: video frames get the photos' pixel cap; --size, --overlap and prepare --size
are refused out of range, with the range, before any work."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from colorgan.apps.colorize import main as colorize_main
from colorgan.data import images as image_files
from colorgan.data.prepare import main as prepare_main
from colorgan.inference import colorize_image
from colorgan.models import build_generator
from tests.test_colorize import TINY_UNET, photo, save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(TINY_UNET, tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


def test_video_frames_above_the_image_pixel_cap_are_refused_naming_the_file(ckpt, tmp_path, monkeypatch, capsys):
    pytest.importorskip("av")
    from colorgan.apps.video import VideoError, colorize_video, pan_zoom_clip

    clip = pan_zoom_clip(Image.fromarray(photo(60, 40)), tmp_path / "film.mp4", frames=4, side=32, fps=12)
    monkeypatch.setattr(image_files, "MAX_DECODED_PIXELS", 32 * 32 - 1)  # a photo of 32 x 32 would be refused too
    with pytest.raises(VideoError, match=r"film\.mp4: frames of 32 x 32 pixels are more than the 0\.001023 MP"):
        colorize_video(build_generator(TINY_UNET).eval(), clip, tmp_path / "out.mp4", size=32, progress=False)
    assert not (tmp_path / "out.mp4").exists()
    assert colorize_main([str(clip), "--ckpt", str(ckpt), "--out", str(tmp_path / "cli")]) == 1
    assert f"skipped {clip}: {clip}: frames of 32 x 32 pixels" in capsys.readouterr().err
    assert not list((tmp_path / "cli").glob("*.mp4"))


@pytest.mark.parametrize(
    ("option", "words"),
    [
        (["--size", "8"], "--size gives a model side of 8 pixels; it must be 16..2048"),
        (["--size", "100000"], "--size gives a model side of 100000 pixels; it must be 16..2048"),
        (["--overlap", "0.9", "--mode", "tiles"], "--overlap is a fraction of the window in [0, 0.75]"),
        (["--overlap", "nan"], "--overlap is a fraction of the window in [0, 0.75]"),
        (["--temporal", "1"], "--temporal is a fraction in [0, 1), got 1.0"),
    ],
)
def test_colorize_options_out_of_range_are_refused_before_any_work(ckpt, tmp_path, capsys, option, words):
    Image.fromarray(photo(30, 20)).save(tmp_path / "a.png")
    assert colorize_main([str(tmp_path / "a.png"), "--ckpt", str(ckpt), "--out", str(tmp_path / "out"), *option]) == 1
    assert words in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_edges_of_the_ranges_are_accepted(ckpt, tmp_path):
    Image.fromarray(photo(30, 20)).save(tmp_path / "a.png")
    args = [str(tmp_path / "a.png"), "--ckpt", str(ckpt), "--out", str(tmp_path / "out"), "--mode", "tiles"]
    assert colorize_main([*args, "--size", "16", "--overlap", "0.75"]) == 0
    assert (tmp_path / "out" / "a.png").is_file()


def test_the_python_api_has_the_same_bounds():
    generator, image = build_generator(TINY_UNET).eval(), Image.fromarray(photo(30, 20))
    with pytest.raises(ValueError, match=r"size must be in 16\.\.2048 pixels, got 8"):
        colorize_image(generator, image, 8)
    with pytest.raises(ValueError, match=r"overlap is a fraction of the window in \[0, 0\.75\], got 0\.9"):
        colorize_image(generator, image, 32, "tiles", overlap=0.9)


@pytest.mark.parametrize("size", ["8", "100000"])
def test_prepare_size_out_of_range_is_refused_with_the_range(tmp_path, capsys, size):
    assert prepare_main([str(tmp_path / "photos"), "--out", str(tmp_path / "shards"), "--size", size]) == 1
    err = capsys.readouterr().err
    assert f"--size (the shorter side stored) must be 16..4096 pixels, got {size}" in err
    assert not (tmp_path / "shards").exists()


def test_a_photo_smaller_than_the_smallest_size_is_still_colorized(tmp_path):
    generator = build_generator(TINY_UNET).eval()
    image = Image.fromarray(np.asarray(photo(5, 3)))
    assert colorize_image(generator, image, 16).size == (5, 3)
