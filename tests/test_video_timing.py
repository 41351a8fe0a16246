"""Video timing: every frame is shown when and for as long as in the source, whatever its frame rate."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from colorgan.apps.video import VideoError, colorize_video, pan_zoom_clip, timed_frames
from colorgan.models import build_generator

av = pytest.importorskip("av")
pytestmark = pytest.mark.usefixtures("one_thread")
MS = Fraction(1, 1000)
# a phone's clip: bursts at 25 fps, a 320 ms stall, a 560 ms one, then 30 fps
SHOWN_AT_MS = [0, 40, 80, 400, 440, 1000, 1033, 1066]


@pytest.fixture(scope="module")
def generator() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_generator({"name": "unet", "image_size": 32, "ngf": 8}).eval()


def variable_rate_clip(path: Path, container: str, codec: str) -> Path:
    """Frames at the times of ``SHOWN_AT_MS``, each a different grey, in a millisecond time base."""
    with av.open(str(path), mode="w", format=container) as writer:
        stream = writer.add_stream(codec, rate=25)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        stream.time_base = stream.codec_context.time_base = MS
        for i, ms in enumerate(SHOWN_AT_MS):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 20 * i, np.uint8), format="rgb24")
            frame.pts, frame.time_base = ms, MS
            writer.mux(stream.encode(frame))
        writer.mux(stream.encode())
    return path


def shown_at(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        return [round(float(f.pts * f.time_base), 4) for f in container.decode(video=0)]


def video_seconds(path: Path) -> float:
    """How long the video lasts: its stream's length where the file records one, else the file's."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if stream.duration is not None:
            return float(stream.duration * stream.time_base)
        return container.duration / 1e6


@pytest.mark.parametrize(
    ("container", "codec", "name"), [("mp4", "libx264", "phone.mp4"), ("matroska", "libx264", "phone.mkv")]
)
def test_a_variable_frame_rate_video_keeps_each_frames_time_and_its_length(generator, tmp_path, container, codec, name):
    source = variable_rate_clip(tmp_path / name, container, codec)
    out = tmp_path / "out.mp4"
    colorize_video(generator, source, out, size=32, progress=False)
    assert shown_at(source) == shown_at(out) == [ms / 1000 for ms in SHOWN_AT_MS]  # the stalls are kept
    assert video_seconds(out) == pytest.approx(video_seconds(source), abs=1e-3)


def test_a_constant_rate_video_with_audio_lasts_as_long_as_its_source(generator, tmp_path):
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8))
    source = pan_zoom_clip(photo, tmp_path / "clip.mp4", frames=15, side=32, fps=12)
    out = tmp_path / "out.mp4"
    colorize_video(generator, source, out, size=32, progress=False)
    assert shown_at(out) == shown_at(source)
    assert video_seconds(out) == pytest.approx(video_seconds(source), abs=1e-3) == pytest.approx(15 / 12, abs=1e-3)
    with av.open(str(source)) as src, av.open(str(out)) as dst:
        assert dst.duration == pytest.approx(src.duration, abs=1000)  # microseconds: audio included


def frames(*times: int | None) -> list[tuple[str, int | None]]:
    return [(f"frame{i}", t) for i, t in enumerate(times)]


def test_each_frame_shows_until_the_next_and_the_last_until_the_video_ends():
    timed = list(timed_frames(frames(0, 40, 400), 40, 433, str, Path("a.mp4")))
    assert [(t, d) for _, t, d in timed] == [(0, 40), (40, 360), (400, 33)]
    timed = list(timed_frames(frames(0, None, None), 40, None, str, Path("a.mp4")))  # no times: the average rate
    assert [(t, d) for _, t, d in timed] == [(0, 40), (40, 40), (80, 40)]


def test_frame_times_that_go_back_are_refused_naming_the_file():
    with pytest.raises(VideoError, match=r"a\.mp4: frame 2 is shown at 0\.040 s, not after frame 1 \(0\.080 s\)"):
        list(timed_frames(frames(0, 80, 40), 40, None, lambda t: f"{t / 1000:.3f} s", Path("a.mp4")))
