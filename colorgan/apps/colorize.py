"""``colorgan-colorize``: colorize image files and folders into marked PNGs, never overwriting what it did not write.

The colorizing itself is :mod:`colorgan.inference`; this module finds the inputs, names the
outputs (see :data:`EPILOG`), writes them and reports what happened.

Command line: ``colorgan-colorize INPUT... --ckpt CKPT --out DIR`` (``--help`` for the rules).
"""

from __future__ import annotations

import argparse
import glob
import itertools
import os
import sys
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin
from torch import nn
from tqdm import tqdm

from colorgan.apps.cli import add_model_arguments, check_size_option, load_model
from colorgan.apps.video import (
    VIDEO_EXTENSIONS,
    VIDEO_OUTPUT_SUFFIX,
    TemporalSmoothing,
    VideoError,
    colorize_video,
    is_earlier_video_output,
)
from colorgan.data import images as image_io
from colorgan.data.images import IMAGE_EXTENSIONS, BadImageError, decode_image, find_images
from colorgan.errors import ColorganError, fail
from colorgan.files import is_temp_file, save_image_atomic
from colorgan.inference import (
    MAX_OVERLAP,
    MODES,
    NonFiniteOutputError,
    colorize_images,
    default_batch_size,
)
from colorgan.models import set_temperature
from colorgan.models.levers import MAX_CHROMA_GAIN, with_levers
from colorgan.output_checks import OutputPlaceError, check_output_folder

OUTPUT_SUFFIX = ".png"
COLLISION_MARK = "_colorized"
OUTPUT_MARK = "colorgan-colorize"  # PNG text key on every output, its value the input's name: how outputs are known
PENDING_PIXELS = 64_000_000  # the CLI colorizes its pending files once they hold this many pixels


class UnsafeOutputPath(ColorganError, ValueError):
    """An output name that would land outside the output folder."""


# ----------------------------------------------------------------------------- files and names
@dataclass(frozen=True)
class Job:
    """One input file and the output name it gets, relative to the output folder."""

    source: Path
    relative: Path


@dataclass
class Inputs:
    """The files to colorize, and the command-line inputs that named nothing (reported as failures)."""

    jobs: list[Job] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    earlier_outputs: int = 0  # files this command wrote before (they carry OUTPUT_MARK): never inputs


def _glob_base(pattern: str) -> Path:
    """The leading folders of a glob pattern that hold no wildcard: names are taken relative to it."""
    return Path(*itertools.takewhile(lambda part: not glob.has_magic(part), Path(pattern).parts))


def _is_inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def is_earlier_output(path: Path) -> bool:
    """A PNG that colorize wrote (its text holds :data:`OUTPUT_MARK`): never an input, replaced by a new run.

    Only the PNG header is read. Marking the files themselves works wherever they lie, whatever
    ``--out`` the earlier run had, and names no file that a manifest could lose track of.
    """
    if path.suffix.lower() == VIDEO_OUTPUT_SUFFIX:
        return is_earlier_video_output(path)
    if path.suffix.lower() != OUTPUT_SUFFIX or not path.is_file():
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                return im.format == "PNG" and OUTPUT_MARK in im.info
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
        return False  # not readable, so not ours: reading it as an input reports why


def collect_inputs(inputs: Iterable[str], out_dir: Path) -> Inputs:
    """Expand files, folders (recursive) and globs into jobs, each source file once, named as :data:`EPILOG` says.

    Earlier outputs are counted, not queued, so re-running never colorizes outputs.
    """
    result = Inputs()
    seen: set[Path] = set()
    out_resolved = out_dir.resolve()

    def add(source: Path, base: Path | None) -> None:
        out_inside_base = base is not None and out_resolved != base.resolve() and _is_inside(out_resolved, base)
        if out_inside_base and _is_inside(source, out_resolved):
            return  # an earlier output: --out lies inside this input folder
        key = source.resolve()
        if key in seen:
            return
        seen.add(key)
        if is_earlier_output(source):
            result.earlier_outputs += 1
        else:
            result.jobs.append(Job(source, source.relative_to(base) if base is not None else Path(source.name)))

    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            for image in find_images(path):
                add(image, path)
        elif path.is_file():
            add(path, None)
        elif glob.has_magic(item):
            base = _glob_base(str(path))
            found = []
            for match in sorted(Path(m) for m in glob.glob(str(path), recursive=True)):
                if match.is_dir():
                    found += find_images(match)
                elif match.suffix.lower() in IMAGE_EXTENSIONS and not is_temp_file(match) and match.is_file():
                    found.append(match)
            for image in found:
                add(image, base)
            if not found:
                result.missing.append(item)
        else:
            result.missing.append(item)
    return result


def safe_output_path(out_dir: Path, relative: str | Path) -> Path:
    """``out_dir / relative``, resolved; refuses names (``..``, absolute, symlinks) that leave ``out_dir``."""
    rel = Path(relative)
    root = Path(out_dir).resolve()
    if rel.is_absolute() or rel.drive or not rel.parts:
        raise UnsafeOutputPath(f"output name {str(relative)!r} must be a relative path inside {root}")
    target = (root / rel).resolve()
    if target == root or not target.is_relative_to(root):
        raise UnsafeOutputPath(f"output name {str(relative)!r} resolves to {target}, outside {root}")
    return target


def _candidate_names(relative: Path) -> Iterator[Path]:
    """``a.png``, then ``a_jpg.png`` (suffix kept), then each with ``_colorized`` appended, and so on
    (``.mp4`` instead of ``.png`` for a video)."""
    suffix = VIDEO_OUTPUT_SUFFIX if relative.suffix.lower() in VIDEO_EXTENSIONS else OUTPUT_SUFFIX
    stems = [relative.stem] + ([f"{relative.stem}_{relative.suffix[1:]}"] if relative.suffix else [])
    for marks in itertools.count():
        for stem in stems:
            yield relative.with_name(f"{stem}{COLLISION_MARK * marks}{suffix}")


def plan_outputs(jobs: Sequence[Job], out_dir: Path) -> dict[Job, Path | UnsafeOutputPath]:
    """Output path of every job: the first of :func:`_candidate_names` that no other job has, that is no
    input, and where nothing but an earlier output lies, so no file colorize did not write is overwritten."""
    sources = {job.source.resolve() for job in jobs}
    taken: set[Path] = set()
    plan: dict[Job, Path | UnsafeOutputPath] = {}
    for job in jobs:
        try:
            for name in _candidate_names(job.relative):
                target = safe_output_path(out_dir, name)
                free = not os.path.lexists(target) or is_earlier_output(target)  # an earlier output is replaced
                if target not in taken and target not in sources and free:
                    break
        except UnsafeOutputPath as err:
            plan[job] = err
            continue
        taken.add(target)
        plan[job] = target
    return plan


# ----------------------------------------------------------------------------- command line
PROG = "colorgan-colorize"
HELP = "Colorize photos of any size with a trained colorgan generator, keeping their own L."
EPILOG = f"""\
inputs: image files, folders (searched recursively) and globs ("photos/**/*.jpg"); from folders and
  globs, the files ending in {" ".join(IMAGE_EXTENSIONS)}.
  Gray, RGB, RGBA, palette, 16-bit and EXIF-rotated images are read; a colour photo is
  re-colorized from its L. The output is upright and has the input's size, except that a JPEG
  above {image_io.MAX_DECODED_PIXELS / 1e6:g} MP is decoded (as in training) at 1/2, 1/4 or 1/8 scale
  and colorized at that size, noted on stderr; other formats above that are refused.

outputs: <out>/<name>.png, 8-bit RGB, or RGBA when the input has transparency (alpha kept).
  <name> is a file's own name, the path inside a given folder, or the path below a glob's fixed
  folders, with its suffix replaced by .png (PNG is lossless and keeps alpha). Every output
  carries the PNG text "{OUTPUT_MARK}: <input name>": files with that mark are earlier outputs,
  never read as inputs (wherever they lie) and replaced by the next run. No other file is ever
  overwritten: if the name is another input's output, an input itself or a file colorize did
  not write, the suffix is kept (a.jpg -> a_jpg.png) and then "{COLLISION_MARK}" appended until
  the name is free; the same inputs get the same names on every run, even with --out equal to the
  input folder. Images under --out are not read when --out is inside an input folder. Names that
  would leave --out (through symlinks) are refused.

modes: full (default) predicts ab on a SIZE x SIZE copy and upsamples it bilinearly onto the
  full-resolution L; tiles runs overlapping SIZE x SIZE windows at full resolution and blends them.

exit status (the same for every colorgan command): 0 all written; 1 a mistake, "colorgan-colorize:
  error: ..." on stderr: some inputs failed (each named, the rest still written), or nothing could
  run (bad checkpoint, device or option value, or --out is a file or cannot be written: checked
  before the model is loaded); 2 the command line itself is wrong (unknown flag, missing --ckpt).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=HELP,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders, globs or video files")
    add_model_arguments(parser)
    parser.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="classification models: annealed-mean T, lower is more vivid (default: the model's own, e.g. 0.38)",
    )
    parser.add_argument(
        "--chroma-gain",
        type=float,
        default=1.0,
        metavar="GAIN",
        help="scale the predicted colour: below 1 holds it back toward gray, above 1 saturates (default 1, as trained)",
    )
    parser.add_argument(
        "--self-ensemble",
        action="store_true",
        help="average 10 views of each image (mirror x 5 shifts): steadier colours, 10x the compute",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder (created if missing)")
    parser.add_argument("--mode", choices=MODES, default="full", help="full (default) or tiles, see below")
    parser.add_argument(
        "--overlap", type=float, default=0.25, help=f"tiles: window overlap, a fraction in [0, {MAX_OVERLAP}] (0.25)"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="images (full, default 8) or windows (tiles, default ~256K pixels of them) per batch",
    )
    parser.add_argument(
        "--temporal",
        type=float,
        nargs="?",
        const=0.8,
        default=None,
        metavar="STRENGTH",
        help="video: smooth colour over time where the scene is still (strength in [0, 1), default 0.8)",
    )
    return parser


def check_out_apart_from_model(out: Path, ckpt: Path) -> None:
    """``--out`` is not the model folder given as ``--ckpt``, nor inside it: its files are the model's alone."""
    if ckpt.is_dir() and _is_inside(out, ckpt):
        raise OutputPlaceError(
            f"--out {out} is inside the model folder --ckpt {ckpt}, whose files are the model's (and are shared "
            "with it); choose another --out"
        )


def colorize_videos(
    generator: nn.Module,
    jobs: Sequence[Job],
    plan: dict[Job, Path | UnsafeOutputPath],
    temporal: float | None,
    **settings: Any,
) -> tuple[int, list[str]]:
    """Colorize each video into its planned ``.mp4``; returns (videos written, one message per failure)."""
    failures: list[str] = []
    for job in jobs:
        source, target = job.source, plan[job]
        try:
            if isinstance(target, UnsafeOutputPath):
                raise target
            smoothing = TemporalSmoothing(strength=temporal) if temporal is not None else None
            summary = colorize_video(generator, source, target, temporal=smoothing, **settings)
        except (VideoError, UnsafeOutputPath, NonFiniteOutputError, OSError) as err:
            _fail(f"skipped {source}: {err}", failures)
            continue
        tqdm.write(
            f"{source} -> {target}: {summary['frames']} frames at {summary['fps']:g} fps "
            f"({summary['frames_per_second']:.1f} frames/s), flicker {summary['flicker']:.3f} "
            f"(mean |delta ab| on still pixels, Lab units){', audio copied' if summary['audio'] else ''}",
            file=sys.stderr,
        )
    return len(jobs) - len(failures), failures


def _fail(message: str, failures: list[str] | None = None) -> int:
    """Say what failed on stderr (and add it to ``failures``); the exit status of a mistake (colorgan.errors)."""
    if failures is not None:
        failures.append(message)
    return fail(PROG, message, write=tqdm.write)


def _note(message: str) -> None:
    tqdm.write(f"{PROG}: note: {message}", file=sys.stderr)


def _earlier(count: int) -> str:
    return f"{count} earlier output{'s' if count != 1 else ''} of colorgan-colorize (PNGs marked {OUTPUT_MARK!r})"


def reduced_note(source: Path, decoded: image_io.DecodedImage) -> str:
    width, height = decoded.image.size
    return (
        f"{source} holds more than the {image_io.MAX_DECODED_PIXELS / 1e6:g} MP decoded at once; "
        f"colorized at 1/{decoded.scale} scale, {width} x {height}"
    )


def save_colorized(image: Image.Image, path: Path, source_name: str) -> None:
    """Write an output PNG marked with its input's name, whole or not at all (also the demo's download)."""
    mark = PngImagePlugin.PngInfo()
    mark.add_text(OUTPUT_MARK, os.fsencode(source_name).decode("utf-8", "backslashreplace"))  # any bytes of a name
    # photos barely compress further and level 1 is ~3x faster than 6
    save_image_atomic(image, path, compress_level=1, pnginfo=mark)


def colorize_files(
    generator: nn.Module,
    jobs: Sequence[Job],
    plan: dict[Job, Path | UnsafeOutputPath],
    size: int,
    mode: str = "full",
    batch_size: int | None = None,
    overlap: float = 0.25,
) -> tuple[int, list[str]]:
    """Colorize each job into its planned path; returns (files written, one message per failure).

    Full mode batches files (fewer when they hold many pixels), tiles mode the windows of one file.
    """
    written, failures = 0, []
    pending: list[tuple[Job, Image.Image]] = []
    batch_size = batch_size or default_batch_size(size, mode)
    files_per_batch = batch_size if mode == "full" else 1

    def colorize(batch: list[Image.Image]) -> list[Image.Image]:
        return colorize_images(generator, batch, size, mode, batch_size=batch_size, overlap=overlap)

    def flush() -> None:
        nonlocal written
        try:
            images: list[Image.Image | None] = list(colorize([image for _, image in pending]))
        except NonFiniteOutputError:  # one by one, so the others are written and each culprit named
            images = []
            for job, image in pending:
                try:
                    images += colorize([image])
                except NonFiniteOutputError as err:
                    _fail(f"skipped {job.source}: {err}", failures)
                    images.append(None)
        for (job, _), out in zip(pending, images):
            if out is None:
                continue
            try:
                save_colorized(out, plan[job], job.relative.as_posix())
                written += 1
            except OSError as err:
                _fail(f"{job.source}: cannot write {plan[job]}: {err}", failures)
        bar.update(len(pending))
        pending.clear()

    with tqdm(total=len(jobs), unit="image", desc="colorizing", disable=len(jobs) < 2) as bar:
        for job in jobs:
            target = plan[job]
            try:
                if isinstance(target, UnsafeOutputPath):
                    raise target
                decoded = decode_image(job.source)
                if decoded.scale > 1:
                    _note(reduced_note(job.source, decoded))
                pending.append((job, decoded.image))
            except BadImageError as err:
                _fail(f"skipped: {err}", failures)
                bar.update(1)
            except UnsafeOutputPath as err:
                _fail(f"skipped {job.source}: {err}", failures)
                bar.update(1)
            pixels = sum(image.width * image.height for _, image in pending)
            if pending and (len(pending) >= files_per_batch or pixels >= PENDING_PIXELS):
                flush()
        if pending:
            flush()
    return written, failures


def argument_problem(args: argparse.Namespace) -> str | None:
    """The first out-of-range option, said with its range; None when all are usable."""
    if args.batch_size is not None and args.batch_size < 1:
        return f"--batch-size must be >= 1, got {args.batch_size}"
    if not 0 <= args.overlap <= MAX_OVERLAP:
        return (
            f"--overlap is a fraction of the window in [0, {MAX_OVERLAP}] (at {MAX_OVERLAP} each pixel is in 16 "
            f"windows already), got {args.overlap}"
        )
    if args.temporal is not None and not 0 <= args.temporal < 1:
        return f"--temporal is a fraction in [0, 1), got {args.temporal}"
    if not 0 <= args.chroma_gain <= MAX_CHROMA_GAIN:
        return f"--chroma-gain must be in [0, {MAX_CHROMA_GAIN:g}] (1 = as trained, 0 = gray), got {args.chroma_gain}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Colorize the inputs into --out; returns the exit status (see ``--help``)."""
    args = build_parser().parse_args(argv)
    if problem := argument_problem(args):
        return _fail(problem)
    try:
        check_size_option(args.size)
        check_output_folder(args.out)  # before the model is loaded
        check_out_apart_from_model(args.out, Path(args.ckpt))
        generator, _, size = load_model(args)
        if not set_temperature(generator, args.temperature) and args.temperature is not None:
            return _fail(f"--temperature applies to classification models; {args.ckpt} regresses ab directly")
        generator = with_levers(generator, args.chroma_gain, args.self_ensemble)
    except (ColorganError, ValueError, RuntimeError) as err:
        return _fail(str(err))

    videos = [Path(i) for i in args.inputs if Path(i).suffix.lower() in VIDEO_EXTENSIONS and Path(i).is_file()]
    inputs = collect_inputs([i for i in args.inputs if Path(i) not in videos], args.out)
    video_jobs = [Job(video, Path(video.name)) for video in videos]
    plan = plan_outputs([*inputs.jobs, *video_jobs], args.out)  # one naming rule: no two outputs share a name
    videos_written, failures = colorize_videos(
        generator, video_jobs, plan, size=size, mode=args.mode, temporal=args.temporal
    )
    for item in inputs.missing:
        _fail(f"{item}: no such file or folder, and no image matches it", failures)
    if inputs.earlier_outputs:
        _note(f"not reading {_earlier(inputs.earlier_outputs)} (outputs are never inputs)")
    settings = {"size": size, "mode": args.mode, "batch_size": args.batch_size, "overlap": args.overlap}
    written, errors = colorize_files(generator, inputs.jobs, plan, **settings)
    failures += errors
    written += videos_written
    total = len(inputs.jobs) + len(inputs.missing) + len(videos)
    if total == 0:
        only = f" but {_earlier(inputs.earlier_outputs)}" if inputs.earlier_outputs else ""
        _fail(f"no images in {' '.join(args.inputs)}{only}")
    summary = f"colorized {written} of {total} inputs into {args.out}"
    print(summary + (f"; {len(failures)} failed (listed above)" if failures else ""), file=sys.stderr)
    return 1 if failures or total == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
