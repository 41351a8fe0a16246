"""Video: frames colorized as photos are, the source's rate, size and audio kept, flicker measured."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from colorgan.apps.colorize import main
from colorgan.apps.video import TemporalSmoothing, VideoError, colorize_video, pan_zoom_clip
from colorgan.inference import colorize_images
from colorgan.models import build_generator
from tests.test_colorize import save_checkpoint

av = pytest.importorskip("av")
pytestmark = pytest.mark.usefixtures("one_thread")
TINY_UNET = {"name": "unet", "image_size": 32, "ngf": 8}


def a_photo() -> Image.Image:
    """A real photo when the data is beside the project, else a detailed synthetic one."""
    folder = Path(os.environ.get("COLORGAN_DATA_DIR", "../shared/data")) / "photos256" / "val"
    photos = sorted(folder.glob("*.jpg")) if folder.is_dir() else []
    if photos:
        return Image.open(photos[0]).convert("RGB")
    yy, xx = np.mgrid[0:160, 0:200]
    rgb = np.stack([xx * 1.2, yy * 1.5, 128 + 100 * np.sin(xx / 9.0) * np.cos(yy / 11.0)], axis=-1)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pan_zoom_clip(a_photo(), tmp_path_factory.mktemp("video") / "clip.mp4", frames=20, side=64, fps=12)


@pytest.fixture(scope="module")
def generator() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_generator(TINY_UNET).eval()


def frames_of(path: Path) -> list[Image.Image]:
    with av.open(str(path)) as container:
        return [f.to_image().convert("RGB") for f in container.decode(video=0)]


def test_frames_rate_size_and_audio_are_kept(clip, generator, tmp_path):
    out = tmp_path / "out.mp4"
    summary = colorize_video(generator, clip, out, size=32, progress=False)
    with av.open(str(clip)) as src, av.open(str(out)) as dst:
        assert dst.streams.video[0].average_rate == src.streams.video[0].average_rate == 12
        assert dst.streams.audio and dst.streams.audio[0].rate == src.streams.audio[0].rate
    source, colorized = frames_of(clip), frames_of(out)
    assert summary["frames"] == len(colorized) == len(source) == 20
    assert colorized[0].size == source[0].size
    # each frame is what photo inference makes of it, up to the video codec's loss
    expected = colorize_images(generator, source[:3], size=32)
    for got, want in zip(colorized[:3], expected):
        assert np.abs(np.asarray(got, np.float32) - np.asarray(want, np.float32)).mean() < 3.0


def test_temporal_smoothing_reduces_flicker_on_still_pixels(clip, generator, tmp_path):
    plain = colorize_video(generator, clip, tmp_path / "plain.mp4", size=32, progress=False)
    smooth = colorize_video(
        generator, clip, tmp_path / "smooth.mp4", size=32, temporal=TemporalSmoothing(), progress=False
    )
    assert 0 < smooth["flicker"] < plain["flicker"]


def test_smoothing_keeps_still_colour_and_follows_change():
    smooth = TemporalSmoothing(strength=0.8, sigma=2.0)
    L = torch.zeros(1, 1, 1, 2)
    smooth(L, torch.zeros(1, 2, 1, 2))
    moved = L.clone()
    moved[..., 1] = 0.5  # 25 L* units brighter: a moving edge
    out = smooth(moved, torch.ones(1, 2, 1, 2))
    assert out[..., 0].allclose(torch.tensor(0.2))  # still pixel: 80% of its previous colour kept
    assert out[..., 1].allclose(torch.tensor(1.0), atol=1e-4)  # changed pixel: its new colour


def test_an_unreadable_video_is_named(generator, tmp_path):
    bad = tmp_path / "film.mp4"
    bad.write_text("not a video")
    with pytest.raises(VideoError, match=r"film\.mp4"):
        colorize_video(generator, bad, tmp_path / "out.mp4", size=32, progress=False)
    assert not (tmp_path / "out.mp4").exists()


def test_the_command_line_colorizes_a_video_and_reports_its_flicker(clip, tmp_path, capsys):
    ckpt = save_checkpoint(TINY_UNET, tmp_path / "tiny.ckpt")
    assert main([str(clip), "--ckpt", str(ckpt), "--out", str(tmp_path / "out"), "--temporal"]) == 0
    assert len(frames_of(tmp_path / "out" / "clip.mp4")) == 20
    assert "flicker" in capsys.readouterr().err


def test_a_file_the_command_did_not_write_is_never_replaced(clip, tmp_path):
    ckpt = save_checkpoint(TINY_UNET, tmp_path / "tiny.ckpt")
    out = tmp_path / "out"
    out.mkdir()
    (out / "clip.mp4").write_bytes(b"someone else's film")
    assert main([str(clip), "--ckpt", str(ckpt), "--out", str(out)]) == 0
    assert (out / "clip.mp4").read_bytes() == b"someone else's film"
    assert len(frames_of(out / "clip_mp4.mp4")) == 20
    before = (out / "clip_mp4.mp4").stat().st_mtime_ns
    assert main([str(clip), "--ckpt", str(ckpt), "--out", str(out)]) == 0  # its own output is replaced
    assert (out / "clip_mp4.mp4").stat().st_mtime_ns != before
    assert sorted(p.name for p in out.iterdir()) == ["clip.mp4", "clip_mp4.mp4"]


def test_two_videos_of_the_same_name_get_two_outputs(clip, tmp_path):
    ckpt = save_checkpoint(TINY_UNET, tmp_path / "tiny.ckpt")
    other = tmp_path / "clip.mov"
    other.write_bytes(clip.read_bytes())  # the same stem, another container name
    out = tmp_path / "out"
    assert main([str(clip), str(other), "--ckpt", str(ckpt), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["clip.mp4", "clip_mov.mp4"]
