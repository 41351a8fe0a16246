"""Colorize photos of any size: keep the photo's own full-resolution L, add the model's ab.

The generator learned colour at its training size, so it always runs at that size:

* ``full`` (default): the model predicts ab on a copy resized to ``size x size`` and the ab is
  upsampled bilinearly to the photo's size, the approach of Zhang et al.'s colorization and DDColor.
  Colour varies slowly, so low-resolution ab over full-resolution L loses little, and the cost and
  memory of the network do not grow with the photo.
* ``tiles``: the model runs on overlapping ``size x size`` windows of the full-resolution L (batched)
  and the predictions are averaged with a smooth window weight, so no seam shows. Every pixel is
  coloured at the scale the model was trained at, which suits large photos and models trained
  on large crops.

Either way the output is rendered by :func:`colorgan.color.render_uint8`, the one rendering that
evaluation and validation score too: it keeps the input's L, and where the predicted colour does
not exist at that lightness (out of the sRGB gamut) its chroma is reduced until it does. The
full-resolution steps (Lab conversion, ab upsampling, gamut fitting) run in strips of
:data:`STRIP_PIXELS`, so full mode holds little more than the input and output images; tiles
mode also keeps the full-resolution L and the blended ab with its weights (16 bytes per pixel).

Command line: ``colorgan-colorize INPUT... --ckpt CKPT --out DIR`` (``--help`` for the rules).
"""

from __future__ import annotations

import argparse
import glob
import itertools
import math
import os
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, PngImagePlugin
from torch import nn
from tqdm import tqdm

from colorgan.checkpoint import CheckpointError, load_generator
from colorgan.color import keep_lightness_rgb, rgb_to_lab_normalized, to_uint8
from colorgan.data import images as image_io
from colorgan.data.images import IMAGE_EXTENSIONS, BadImageError, decode_image, find_images, split_alpha
from colorgan.places import OutputPlaceError, check_output_folder

MODES = ("full", "tiles")
OUTPUT_SUFFIX = ".png"
COLLISION_MARK = "_colorized"
OUTPUT_MARK = "colorgan-colorize"  # PNG text key on every output, its value the input's name: how outputs are known
STRIP_PIXELS = 1 << 18  # pixels per strip of the full-resolution steps: ~1 MB per float32 plane
PENDING_PIXELS = 64_000_000  # the CLI colorizes its pending files once they hold this many pixels
BATCH_PIXELS = 1 << 18  # default tiles batch: this many pixels of windows (256 windows of 32 x 32)


def default_batch_size(size: int, mode: str) -> int:
    """8 images in full mode; in tiles mode enough windows for ~256K pixels, at least 8.

    Small windows need large batches: each call of a network has a fixed cost, which dominates
    at 32 x 32 (a 2048 x 1536 photo has ~5,500 such windows).
    """
    return 8 if mode == "full" else max(8, BATCH_PIXELS // (size * size))


class UnsafeOutputPath(ValueError):
    """An output name that would land outside the output folder."""


# ----------------------------------------------------------------------------- tensor helpers
def _device_of(module: nn.Module) -> torch.device:
    param = next(module.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _dtype_of(module: nn.Module) -> torch.dtype:
    param = next(module.parameters(), None)
    return param.dtype if param is not None else torch.float32


def _batched(items: Sequence, n: int) -> Iterator[Sequence]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def _strip_rows(width: int) -> int:
    return max(1, STRIP_PIXELS // max(1, width))


def _rgb_tensor(rgb: Image.Image) -> torch.Tensor:
    """8-bit RGB PIL image -> (1, 3, H, W) uint8 tensor on the CPU."""
    return torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1).unsqueeze(0)


def _lightness(rgb: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Normalised L of a (1, 3, H, W) uint8 image at full resolution, converted strip by strip."""
    H, W = rgb.shape[-2:]
    L = torch.empty((1, 1, H, W), device=device)
    step = _strip_rows(W)
    for r0 in range(0, H, step):
        L[..., r0 : r0 + step, :] = rgb_to_lab_normalized(rgb[..., r0 : r0 + step, :].to(device))[0]
    return L


def _compose(rgb: torch.Tensor, ab_rows: Callable[[int, int], torch.Tensor], device: torch.device) -> np.ndarray:
    """Full-resolution L of ``rgb`` + ab (fetched strip by strip) -> H x W x 3 uint8 RGB."""
    H, W = rgb.shape[-2:]
    out = np.empty((H, W, 3), dtype=np.uint8)
    step = _strip_rows(W)
    for r0 in range(0, H, step):
        r1 = min(H, r0 + step)
        L = rgb_to_lab_normalized(rgb[..., r0:r1, :].to(device))[0]
        strip = to_uint8(keep_lightness_rgb(L, ab_rows(r0, r1)))
        out[r0:r1] = strip[0].permute(1, 2, 0).cpu().numpy()
    return out


def _bilinear_rows(ab_small: torch.Tensor, H: int, W: int) -> Callable[[int, int], torch.Tensor]:
    """Rows r0:r1 of ``F.interpolate(ab_small, (H, W), mode="bilinear")`` without the whole result.

    ``grid_sample`` at the output pixel centres with border padding is exactly that resize
    (align_corners=False), so only one strip of full-resolution ab exists at a time.
    """
    device = ab_small.device
    xs = (torch.arange(W, device=device, dtype=torch.float32) + 0.5) / W * 2 - 1

    def rows(r0: int, r1: int) -> torch.Tensor:
        ys = (torch.arange(r0, r1, device=device, dtype=torch.float32) + 0.5) / H * 2 - 1
        grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], dim=-1).unsqueeze(0)
        return F.grid_sample(ab_small, grid, mode="bilinear", padding_mode="border", align_corners=False)

    return rows


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Evenly spread window origins covering ``0..length``, neighbours at most ``stride`` apart."""
    if length <= window:
        return [0]
    n = math.ceil((length - window) / stride) + 1
    return [round(i * (length - window) / (n - 1)) for i in range(n)]


def window_weight(length: int, ramp: int, device: torch.device) -> torch.Tensor:
    """1-D blending weight: a raised-cosine ramp over ``ramp`` pixels at both ends, 1 in between.

    Never zero, so a pixel that only one window covers (the photo's border) keeps its prediction.
    """
    i = torch.arange(length, device=device, dtype=torch.float32)
    edge = torch.minimum(i + 0.5, length - i - 0.5) / max(1, ramp)
    return torch.sin(edge.clamp(max=1.0) * (math.pi / 2)) ** 2


def _predict_tiles(
    model: Callable[[torch.Tensor], torch.Tensor], L: torch.Tensor, size: int, overlap: float, batch_size: int
) -> torch.Tensor:
    """ab at full resolution from overlapping ``size x size`` windows, blended by weight."""
    H, W = L.shape[-2:]
    th, tw = min(size, H), min(size, W)
    ramp = max(1, round(size * overlap))
    stride = max(1, size - ramp)
    weight = window_weight(th, ramp, L.device)[:, None] * window_weight(tw, ramp, L.device)[None, :]
    acc = torch.zeros((1, 2, H, W), device=L.device)
    total = torch.zeros((1, 1, H, W), device=L.device)
    origins = [(y, x) for y in window_starts(H, th, stride) for x in window_starts(W, tw, stride)]
    for chunk in _batched(origins, batch_size):
        batch = torch.cat([L[..., y : y + th, x : x + tw] for y, x in chunk])
        for (y, x), ab in zip(chunk, model(batch)):
            acc[0, :, y : y + th, x : x + tw] += ab * weight
            total[0, 0, y : y + th, x : x + tw] += weight
    return acc.div_(total)


# ----------------------------------------------------------------------------- public API
@torch.inference_mode()
def colorize_images(
    generator: nn.Module,
    images: Sequence[Image.Image],
    size: int,
    mode: str = "full",
    *,
    batch_size: int | None = None,
    overlap: float = 0.25,
) -> list[Image.Image]:
    """Colorize several images (any mode and size) with ``generator`` on its own device.

    ``size`` is the side the model works at (its training size). ``mode="full"`` predicts every
    image at ``size x size`` in batches of ``batch_size``; ``mode="tiles"`` runs ``size x size``
    windows overlapping by ``overlap`` (a fraction of ``size``) in batches of ``batch_size``
    (default: :func:`default_batch_size`).
    Outputs are RGB (RGBA when the input had alpha, which is kept) of the input's size.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    batch_size = default_batch_size(size, mode) if batch_size is None else batch_size
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap is a fraction of the window in [0, 1), got {overlap}")
    device, dtype = _device_of(generator), _dtype_of(generator)
    model = lambda L: generator(L.to(dtype)).float()
    converted = [split_alpha(im) for im in images]
    results: list[Image.Image] = []

    def finish(i: int, ab_rows: Callable[[int, int], torch.Tensor], rgb: torch.Tensor | None = None) -> None:
        rgb = _rgb_tensor(converted[i][0]) if rgb is None else rgb
        out = Image.fromarray(_compose(rgb, ab_rows, device))
        if converted[i][1] is not None:
            out.putalpha(converted[i][1])
        results.append(out)

    if mode == "full":
        for chunk in _batched(list(range(len(images))), batch_size):
            small = [converted[i][0].resize((size, size), Image.Resampling.BILINEAR) for i in chunk]
            ab_small = model(rgb_to_lab_normalized(torch.cat([_rgb_tensor(s) for s in small]).to(device))[0])
            for j, i in enumerate(chunk):
                W, H = converted[i][0].size
                finish(i, _bilinear_rows(ab_small[j : j + 1], H, W))
    else:
        for i, (image, _) in enumerate(converted):
            rgb = _rgb_tensor(image)
            ab = _predict_tiles(model, _lightness(rgb, device), size, overlap, batch_size)
            finish(i, lambda r0, r1, ab=ab: ab[..., r0:r1, :], rgb)
    return results


def colorize_image(
    generator: nn.Module,
    image: Image.Image,
    size: int,
    mode: str = "full",
    *,
    batch_size: int | None = None,
    overlap: float = 0.25,
) -> Image.Image:
    """Colorize one image (gray, RGB, RGBA, palette, 16-bit; any size): see :func:`colorize_images`.

    The image is used as given; read files with :func:`colorgan.data.images.load_image`, which
    also applies the EXIF orientation.
    """
    return colorize_images(generator, [image], size, mode, batch_size=batch_size, overlap=overlap)[0]


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
    parts: list[str] = []
    for part in Path(pattern).parts:
        if glob.has_magic(part):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")


def _is_inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def is_earlier_output(path: Path) -> bool:
    """A PNG that colorize wrote (its text holds :data:`OUTPUT_MARK`): never an input, replaced by a new run.

    Only the PNG header is read. Marking the files themselves works wherever they lie, whatever
    ``--out`` the earlier run had, and names no file that a manifest could lose track of.
    """
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
    """Expand files, folders (recursive) and globs into jobs; each source file appears once.

    A file is named by its own name, a folder's images by their path inside the folder, a glob's
    matches by their path below the glob's fixed leading folders. Earlier outputs (see
    :func:`is_earlier_output`) are counted, not queued, so re-running never colorizes outputs;
    when ``out_dir`` lies inside an input folder, nothing under it is queued either.
    """
    result = Inputs()
    seen: set[Path] = set()
    out_resolved = out_dir.resolve()

    def add(source: Path, base: Path | None) -> None:
        """Queue ``source``, named relative to ``base`` (its own name if None)."""
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
                elif match.suffix.lower() in IMAGE_EXTENSIONS and match.is_file():
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
    """``a.png``, then ``a_jpg.png`` (suffix kept), then each with ``_colorized`` appended, and so on."""
    stems = [relative.stem] + ([f"{relative.stem}_{relative.suffix[1:]}"] if relative.suffix else [])
    for marks in itertools.count():
        for stem in stems:
            yield relative.with_name(f"{stem}{COLLISION_MARK * marks}{OUTPUT_SUFFIX}")


def plan_outputs(jobs: Sequence[Job], out_dir: Path) -> dict[Job, Path | UnsafeOutputPath]:
    """Output path of every job: ``<out>/<relative path>`` with the suffix ``.png``.

    A name is free when no other job has it, it is no input, and nothing is there but an earlier
    output (replaced); otherwise the next of :func:`_candidate_names` is tried. So no input and no
    file colorize did not write is ever overwritten (``a.jpg`` and ``a.png`` -> ``a.png`` and
    ``a_png.png``), and the same inputs get the same names on every run.
    """
    sources = {job.source.resolve() for job in jobs}
    taken: set[Path] = set()
    plan: dict[Job, Path | UnsafeOutputPath] = {}
    for job in jobs:
        try:
            for name in _candidate_names(job.relative):
                target = safe_output_path(out_dir, name)
                if target not in taken and target not in sources and _replaceable(target):
                    break
        except UnsafeOutputPath as err:
            plan[job] = err
            continue
        taken.add(target)
        plan[job] = target
    return plan


def _replaceable(target: Path) -> bool:
    """Nothing is at ``target``, or an earlier output that the new one replaces."""
    return not (target.exists() or target.is_symlink()) or is_earlier_output(target)


def _mark(source_name: str) -> PngImagePlugin.PngInfo:
    """The PNG text that marks an output, naming its input (undecodable bytes of a name escaped)."""
    info = PngImagePlugin.PngInfo()
    info.add_text(OUTPUT_MARK, os.fsencode(source_name).decode("utf-8", "backslashreplace"))
    return info


def save_png_atomic(image: Image.Image, path: Path, source_name: str) -> None:
    """Write a marked PNG through a temporary file and a rename: an interrupted run leaves no half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        # photos barely compress further; level 1 is ~3x faster than 6
        image.save(tmp, format="PNG", compress_level=1, pnginfo=_mark(source_name))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- command line
def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine; use --device cpu or auto")
    return device


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

exit status: 0 all written; 1 some inputs failed (each named on stderr, the rest still written);
  2 nothing could run (bad checkpoint, device or arguments, or --out is a file or cannot be
  written: checked before the model is loaded).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="colorgan-colorize",
        description=HELP,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or globs")
    parser.add_argument("--ckpt", required=True, help="a checkpoint written by train.py")
    parser.add_argument("--out", required=True, type=Path, help="output folder (created if missing)")
    parser.add_argument("--mode", choices=MODES, default="full", help="full (default) or tiles, see below")
    parser.add_argument("--size", type=int, default=None, help="side the model works at (default: its training size)")
    parser.add_argument("--overlap", type=float, default=0.25, help="tiles: window overlap, fraction (0.25)")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda or cuda:N")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="images (full, default 8) or windows (tiles, default ~256K pixels of them) per batch",
    )
    return parser


def _fail(message: str) -> None:
    tqdm.write(f"colorgan-colorize: {message}", file=sys.stderr)


def _note(message: str) -> None:
    tqdm.write(f"colorgan-colorize: note: {message}", file=sys.stderr)


def _earlier(count: int) -> str:
    return f"{count} earlier output{'s' if count != 1 else ''} of colorgan-colorize (PNGs marked {OUTPUT_MARK!r})"


def _reduced(source: Path, decoded: image_io.DecodedImage) -> str:
    width, height = decoded.rgb.size
    return (
        f"{source} holds more than the {image_io.MAX_DECODED_PIXELS / 1e6:g} MP decoded at once; "
        f"colorized at 1/{decoded.scale} scale, {width} x {height}"
    )


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

    Full mode batches up to ``batch_size`` files (fewer when they hold many pixels); tiles mode
    takes one file at a time and batches its windows. A file that cannot be read or written is
    reported and skipped; the others are still done.
    """
    written, failures = 0, []
    pending: list[tuple[Job, Image.Image, Image.Image | None]] = []
    batch_size = batch_size or default_batch_size(size, mode)
    files_per_batch = batch_size if mode == "full" else 1

    def fail(message: str) -> None:
        failures.append(message)
        _fail(message)

    def flush() -> None:
        nonlocal written
        images = colorize_images(
            generator, [rgb for _, rgb, _ in pending], size, mode, batch_size=batch_size, overlap=overlap
        )
        for (job, _, alpha), out in zip(pending, images):
            if alpha is not None:
                out.putalpha(alpha)
            try:
                save_png_atomic(out, plan[job], job.relative.as_posix())  # type: ignore[arg-type]
                written += 1
            except OSError as err:
                fail(f"{job.source}: cannot write {plan[job]}: {err}")
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
                    _note(_reduced(job.source, decoded))
                pending.append((job, decoded.rgb, decoded.alpha))
            except BadImageError as err:
                fail(f"skipped: {err}")
                bar.update(1)
            except UnsafeOutputPath as err:
                fail(f"skipped {job.source}: {err}")
                bar.update(1)
            pixels = sum(rgb.width * rgb.height for _, rgb, _ in pending)
            if pending and (len(pending) >= files_per_batch or pixels >= PENDING_PIXELS):
                flush()
        if pending:
            flush()
    return written, failures


def main(argv: Sequence[str] | None = None) -> int:
    """Colorize the inputs into --out; returns the exit status (see ``--help``)."""
    args = build_parser().parse_args(argv)
    if (args.batch_size is not None and args.batch_size < 1) or (args.size is not None and args.size < 1):
        _fail("--batch-size and --size must be >= 1")
        return 2
    if not 0 <= args.overlap < 1:
        _fail("--overlap is a fraction of the window in [0, 1)")
        return 2
    try:
        check_output_folder(args.out)
    except OutputPlaceError as err:
        _fail(str(err))
        return 2
    try:
        device = pick_device(args.device)
        generator, hparams = load_generator(args.ckpt, device)
    except (CheckpointError, ValueError, RuntimeError) as err:
        _fail(str(err))
        return 2
    size = args.size or (hparams.get("generator") or {}).get("image_size")
    if not size:
        _fail(f"{args.ckpt} does not record its training size; pass --size")
        return 2

    inputs = collect_inputs(args.inputs, args.out)
    failures = [f"{item}: no such file or folder, and no image matches it" for item in inputs.missing]
    for message in failures:
        _fail(message)
    if inputs.earlier_outputs:
        _note(f"not reading {_earlier(inputs.earlier_outputs)} (outputs are never inputs)")
    settings = {"size": size, "mode": args.mode, "batch_size": args.batch_size, "overlap": args.overlap}
    written, errors = colorize_files(generator, inputs.jobs, plan_outputs(inputs.jobs, args.out), **settings)
    failures += errors
    total = len(inputs.jobs) + len(inputs.missing)
    if total == 0:
        only = f" but {_earlier(inputs.earlier_outputs)}" if inputs.earlier_outputs else ""
        _fail(f"no images in {' '.join(args.inputs)}{only}")
    summary = f"colorized {written} of {total} inputs into {args.out}"
    print(summary + (f"; {len(failures)} failed (listed above)" if failures else ""), file=sys.stderr)
    return 1 if failures or total == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
