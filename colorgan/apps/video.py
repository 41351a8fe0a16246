"""Colorize a film frame by frame: each frame's own full-resolution L, the source's timing and audio.

Frames go through the same inference as photos (:func:`colorgan.inference.colorize_images`), in
batches. A colorizer that sees one frame at a time flickers: the same wall turns a slightly
different colour from frame to frame. ``temporal`` smooths ab over time where the scene is still:
``ab_t <- ab_t + k * w * (ab_{t-1} - ab_t)`` with ``w = exp(-|L_t - L_{t-1}| / sigma)`` per pixel, so
a pixel whose lightness did not change keeps most of its previous colour and a moving edge takes
its new one. The flicker measure reported for every output is the mean |ab_t - ab_{t-1}| (Lab units)
over the pixels whose L* changed by less than :data:`STATIC_L` between the two source frames.

Every output frame is shown when its source frame was, for as long (:func:`timed_frames`): a
variable-frame-rate film (a phone's, a screen recording) keeps its pauses and stays in step with
its copied audio, and the output lasts as long as the source.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from colorgan.color import AB_SCALE, L_SCALE, render_uint8, rgb_to_lab_normalized
from colorgan.data import images as image_files
from colorgan.data.images import BadImageError, decode_image
from colorgan.errors import ColorganError, fail
from colorgan.files import replacing
from colorgan.inference import batched, colorize_images, rgb_tensor

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".m4v", ".mkv", ".avi", ".webm"})
STATIC_L = 1.0  # L* units: a pixel this still between two frames should keep its colour
FRAMES_PER_BATCH = 8
OUTPUT_MARK = "colorgan-colorize"  # in the mp4's comment tag of every output
VIDEO_OUTPUT_SUFFIX = ".mp4"


class VideoError(ColorganError, ValueError):
    """A video that cannot be read or written; the message names the file."""


def _av():  # PyAV is an optional dependency, imported when a video is asked for
    try:
        import av
    except ImportError as err:
        raise VideoError("colorizing video needs PyAV: pip install 'colorgan[video]' (or pip install av)") from err
    return av


def is_earlier_video_output(path: Path) -> bool:
    """An mp4 this command wrote (its comment tag names colorgan-colorize): safe to replace."""
    if not path.is_file():
        return False
    try:
        with _av().open(str(path)) as container:
            return str(container.metadata.get("comment", "")).startswith(OUTPUT_MARK)
    except Exception:  # unreadable, or not a video: not ours
        return False


@dataclass
class TemporalSmoothing:
    """Exponential smoothing of ab guided by the change of L (normalised units in, normalised out)."""

    strength: float = 0.8
    sigma: float = 2.0  # L* units
    _L: torch.Tensor | None = None
    _ab: torch.Tensor | None = None

    def __call__(self, L: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        if self._L is not None and self._L.shape == L.shape:
            still = torch.exp(-(L - self._L).abs() * L_SCALE / self.sigma)
            ab = ab + self.strength * still * (self._ab - ab)
        self._L, self._ab = L, ab
        return ab


@dataclass
class FlickerMeter:
    """Mean |ab_t - ab_{t-1}| in Lab units over the pixels whose source L* barely changed."""

    total: float = 0.0
    pixels: int = 0
    _L: torch.Tensor | None = None
    _ab: torch.Tensor | None = None

    def update(self, source_L: torch.Tensor, out_ab: torch.Tensor) -> None:
        if self._L is not None and self._L.shape == source_L.shape:
            still = (source_L - self._L).abs() * L_SCALE < STATIC_L
            diff = (out_ab - self._ab).abs().mean(dim=1, keepdim=True) * AB_SCALE
            self.total += float(diff[still].sum())
            self.pixels += int(still.sum())
        self._L, self._ab = source_L, out_ab

    @property
    def value(self) -> float:
        return self.total / self.pixels if self.pixels else math.nan


def timed_frames(
    frames: Iterable[tuple[Image.Image, int | None]],
    step: int,
    end: int | None,
    describe: Callable[[int], str],
    source: Path,
) -> Iterator[tuple[Image.Image, int, int]]:
    """Each frame with its presentation time and how long it shows, in the source stream's time base.

    A frame shows until the next one starts, the last one until the source's video ends (``end``; for
    one average frame, ``step``, when the file does not say). A frame without a timestamp comes one
    ``step`` after the one before it. Times that do not increase are refused, naming ``source``: the
    output could not keep them. ``describe`` says a time in words.
    """
    previous: tuple[Image.Image, int] | None = None
    for index, (image, pts) in enumerate(frames):
        if pts is None:
            pts = previous[1] + step if previous is not None else 0
        if previous is not None:
            if pts <= previous[1]:
                raise VideoError(
                    f"{source}: frame {index} is shown at {describe(pts)}, not after frame {index - 1} "
                    f"({describe(previous[1])}); re-time it first, e.g. ffmpeg -i IN -fps_mode cfr OUT.mp4"
                )
            yield previous[0], previous[1], pts - previous[1]
        previous = image, pts
    if previous is not None:
        yield previous[0], previous[1], end - previous[1] if end is not None and end > previous[1] else step


def video_end(container: Any, stream: Any, time_base: Fraction) -> int | None:
    """Where the source's video ends, in ``time_base``: the stream's own length, else the file's (mkv, webm).

    Not the packets' durations: in an mp4 with B-frames they are decoding intervals, not showing times.
    """
    if stream.duration is not None:
        return (stream.start_time or 0) + stream.duration
    if container.duration is not None:  # microseconds from the container's start
        return round(Fraction(container.duration, 1_000_000) / time_base)
    return None


def check_frame_pixels(width: int, height: int, source: Path) -> None:
    """Refuse frames above the pixels a photo may have (``images.MAX_DECODED_PIXELS``): one cap for every input."""
    cap = image_files.MAX_DECODED_PIXELS
    if width * height > cap:
        raise VideoError(
            f"{source}: frames of {width} x {height} pixels are more than the {cap / 1e6:g} MP decoded at once "
            f"(the cap for images too); downscale it first, e.g. ffmpeg -i IN -vf scale=-2:2160 OUT.mp4"
        )


def _lab(frames: list[Image.Image]) -> tuple[torch.Tensor, torch.Tensor]:
    return rgb_to_lab_normalized(torch.cat([rgb_tensor(f) for f in frames]))


def colorize_video(
    generator: nn.Module,
    source: str | Path,
    target: str | Path,
    size: int,
    mode: str = "full",
    *,
    temporal: TemporalSmoothing | None = None,
    progress: bool = True,
) -> dict[str, float]:
    """Write ``target`` (mp4, H.264): ``source`` colorized, each frame at its own time, audio copied; a summary."""
    av = _av()
    source, target = Path(source), Path(target)
    try:
        reader = av.open(str(source))
    except (av.error.FFmpegError, OSError) as err:
        raise VideoError(f"cannot read video {source}: {err}") from err
    with reader, replacing(target) as tmp:
        if not reader.streams.video:
            raise VideoError(f"{source} has no video stream")
        video_in = reader.streams.video[0]
        check_frame_pixels(video_in.codec_context.width, video_in.codec_context.height, source)
        audio_in = reader.streams.audio[0] if reader.streams.audio else None
        rate = video_in.average_rate or Fraction(25)
        time_base = video_in.time_base or 1 / rate
        step = max(1, round(1 / (rate * time_base)))  # one average frame, in the source's time base
        with av.open(str(tmp), mode="w", format="mp4") as writer:
            writer.metadata["comment"] = f"{OUTPUT_MARK}: {source.name}"  # how a later run knows its own output
            video_out = writer.add_stream("libx264", rate=rate)
            video_out.time_base = video_out.codec_context.time_base = time_base  # the source's times, unrounded
            video_out.width, video_out.height = video_in.codec_context.width, video_in.codec_context.height
            video_out.pix_fmt = "yuv420p"
            # crf 17: visually lossless, the colours and not the codec should show. No B-frames: with frames
            # reordered, an mp4 records its length from decoding times, too short where the frame rate varies
            video_out.options = {"crf": "17", "bf": "0"}
            audio_out = writer.add_stream_from_template(audio_in) if audio_in is not None else None
            flicker, frames, started = FlickerMeter(), 0, time.perf_counter()
            bar = tqdm(total=video_in.frames or None, unit="frame", disable=not progress, desc=source.name)

            def video_frames() -> Iterator[tuple[Image.Image, int | None]]:
                for packet in reader.demux(*(s for s in (video_in, audio_in) if s is not None)):
                    if packet.stream is video_in:
                        for frame in packet.decode():
                            check_frame_pixels(frame.width, frame.height, source)  # the size may change mid-film
                            yield frame.to_image().convert("RGB"), frame.pts
                    elif packet.dts is not None:
                        packet.stream = audio_out
                        writer.mux(packet)

            shows_for: dict[int, int] = {}  # presentation time -> duration, until its packet leaves the encoder

            def mux_video(frame: av.VideoFrame | None) -> None:
                for packet in video_out.encode(frame):
                    packet.duration = shows_for.pop(packet.pts, packet.duration)
                    writer.mux(packet)

            def at(pts: int) -> str:
                return f"{float(pts * time_base):.3f} s"

            end = video_end(reader, video_in, time_base)
            frame_times = timed_frames(video_frames(), step, end, at, source)
            for timed in batched(frame_times, FRAMES_PER_BATCH):
                batch = [image for image, _, _ in timed]
                colorized = colorize_images(generator, batch, size, mode)
                source_L, _ = _lab(batch)
                _, out_ab = _lab(colorized)
                if temporal is not None:
                    smoothed = torch.cat([temporal(L[None], ab[None]) for L, ab in zip(source_L, out_ab)])
                    pixels = render_uint8(source_L, smoothed).permute(0, 2, 3, 1).numpy()
                    colorized = [Image.fromarray(p) for p in pixels]
                    out_ab = _lab(colorized)[1]
                for L, ab, image, (_, pts, duration) in zip(source_L, out_ab, colorized, timed):
                    flicker.update(L[None], ab[None])
                    frame = av.VideoFrame.from_image(image)
                    frame.pts, frame.time_base, shows_for[pts] = pts, time_base, duration
                    mux_video(frame)
                frames += len(batch)
                bar.update(len(batch))
                bar.set_postfix(fps=f"{frames / (time.perf_counter() - started):.1f}")
            mux_video(None)
            bar.close()
        if frames == 0:  # inside the block: nothing replaces the target
            raise VideoError(f"{source} has no decodable video frames")
    return {
        "frames": frames,
        "fps": float(rate),
        "frames_per_second": frames / (time.perf_counter() - started),
        "flicker": flicker.value,
        "audio": audio_in is not None,
    }


def pan_zoom_clip(photo: Image.Image, target: str | Path, frames: int = 48, side: int = 128, fps: int = 24) -> Path:
    """A test clip from one photo: a slow pan, a pause, then a zoom; with a 440 Hz tone as audio."""
    av = _av()
    photo = photo.convert("RGB")
    W, H = photo.size
    crop = min(W, H) * 2 // 3
    with replacing(target) as tmp, av.open(str(tmp), mode="w", format="mp4") as writer:
        video = writer.add_stream("libx264", rate=fps)
        video.width = video.height = side
        video.pix_fmt = "yuv420p"
        video.options = {"crf": "12"}
        audio = writer.add_stream("aac", rate=16000)
        samples_per_frame = 16000 // fps
        for i in range(frames):
            t = i / max(1, frames - 1)
            if t < 0.4:  # pan left to right
                x, y, c = (W - crop) * t / 0.4, (H - crop) / 2, crop
            elif t < 0.6:  # still
                x, y, c = W - crop, (H - crop) / 2, crop
            else:  # zoom in towards the centre of the last view
                c = crop * (1 - 0.4 * (t - 0.6) / 0.4)
                x, y = W - crop + (crop - c) / 2, (H - c) / 2
            frame = photo.resize((side, side), Image.Resampling.BICUBIC, box=(x, y, x + c, y + c))
            writer.mux(video.encode(av.VideoFrame.from_image(frame)))
            t = (np.arange(samples_per_frame) + i * samples_per_frame) / 16000
            tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
            sound = av.AudioFrame.from_ndarray(tone, format="flt", layout="mono")
            sound.sample_rate = 16000
            writer.mux(audio.encode(sound))
        writer.mux(video.encode())
        writer.mux(audio.encode())
    return Path(target)


def main(argv: list[str] | None = None) -> int:
    """``python -m colorgan.apps.video PHOTO OUT.mp4``: a pan-and-zoom test clip, to measure flicker on."""
    parser = argparse.ArgumentParser(prog="python -m colorgan.apps.video", description=pan_zoom_clip.__doc__)
    parser.add_argument("photo", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--side", type=int, default=128)
    parser.add_argument("--fps", type=int, default=24)
    args = parser.parse_args(argv)
    try:
        photo = decode_image(args.photo).image
        pan_zoom_clip(photo, args.out, frames=args.frames, side=args.side, fps=args.fps)
    except (BadImageError, VideoError, OSError) as err:
        return fail("python -m colorgan.apps.video", err)
    print(f"wrote {args.out}: {args.frames} frames of {args.side} x {args.side} at {args.fps} fps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
