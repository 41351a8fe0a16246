"""Turn a photo folder into litdata shards, one per split, for ``data=shards``.

    python -m colorgan.data.prepare PHOTO_FOLDER --out SHARDS [--size 286] [--quality 95] [--workers N]

Each photo is decoded once here (any format the folder loader reads, upright per EXIF, strips
clamped to 4:1), resized so its shorter side is --size and stored as a JPEG with its relative
path. Training then only decodes a small JPEG and crops it, in loader workers or on the GPU.
The splits are data=folder's for the same folder and split settings: train/, val/, test/ where
they exist, the rest carved out of the pool by the same seeded per-file hash.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import io
import json
import logging
import multiprocessing
import os
import sys
from pathlib import Path
from typing import Any

from colorgan.data.cifar10 import DataNotFoundError
from colorgan.data.datasets import resize_shorter_side
from colorgan.data.folder import FolderDataModule
from colorgan.data.images import BadImageError, load_image, load_rgb
from colorgan.data.shards import PREPARED_FILE, SPLITS
from colorgan.errors import fail
from colorgan.files import write_text_atomic
from colorgan.output_checks import OutputPlaceError, check_output_folder

log = logging.getLogger(__name__)
# The shorter side stored. Above 4096 a photo is upscaled to tens of megapixels per file (a 4:1 strip at
# 4096 is 67 MP already); below 16 nothing is left to crop a training image from.
MIN_SIZE, MAX_SIZE = 16, 4096
CHUNK_BYTES = "64MB"  # litdata's recommended chunk size: few files, each read in one stream


def encode_photo(item: tuple[str, str, int], size: int, quality: int) -> dict[str, Any] | None:
    """(path, relative path, index) -> the stored item, or None for a file that cannot be read (skipped)."""
    path, relative, index = item
    try:
        img = load_rgb(path, max_side=4 * size)
    except BadImageError:
        return None  # reported once, by the main process, when the split is done
    buffer = io.BytesIO()
    resize_shorter_side(img, size).save(buffer, format="JPEG", quality=quality, subsampling=0)
    return {"jpeg": buffer.getvalue(), "path": relative, "index": index}


def check_places(source: Path, out: Path) -> None:
    """--out must be new or empty, writable, and outside the photo folder (or the folder loader would see it)."""
    if not source.is_dir():
        raise DataNotFoundError(f"PHOTO_FOLDER {source} is not a folder of photos")
    src, dst = source.resolve(), out.resolve()
    if dst == src or src in dst.parents:
        raise OutputPlaceError(
            f"--out {out} is inside the photo folder {source}; choose a folder outside it, "
            f"e.g. --out {source.parent / (source.name + '-shards')}"
        )
    if out.is_dir() and any(out.iterdir()):
        raise OutputPlaceError(f"--out {out} is not empty; choose a new folder, or delete this one to prepare again")
    check_output_folder(out)


def stored_indices(folder: Path) -> set[int]:
    from litdata import StreamingDataset

    dataset = StreamingDataset(str(folder))
    return {int(dataset[i]["index"]) for i in range(len(dataset))}


def optimize_apart(**kwargs: Any) -> None:
    """litdata's ``optimize``, in a forked child where there is fork: it reseeds the random generators, sets
    the start method and a SIGINT handler of the process that calls it, which must not leak into a caller
    (the benchmark, the tests)."""
    from litdata import optimize

    if "fork" not in multiprocessing.get_all_start_methods():
        optimize(**kwargs)
        return
    child = multiprocessing.get_context("fork").Process(target=optimize, kwargs=kwargs)
    child.start()
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"preparing {kwargs['output_dir']} failed (exit code {child.exitcode}; see above)")


def prepare_split(files: list[Path], base: Path, folder: Path, size: int, quality: int, workers: int) -> dict[str, str]:
    """Write one split's shards into ``folder``; returns the unreadable files skipped, each with why."""
    inputs = [(str(f), f.relative_to(base).as_posix(), i) for i, f in enumerate(files)]
    with contextlib.redirect_stdout(io.StringIO()):  # litdata's chatter; its progress bar stays on stderr
        optimize_apart(
            fn=functools.partial(encode_photo, size=size, quality=quality),
            inputs=inputs,
            output_dir=str(folder),
            chunk_bytes=CHUNK_BYTES,
            num_workers=max(1, min(workers, len(inputs))),
            start_method="fork" if "fork" in multiprocessing.get_all_start_methods() else None,  # no re-imports
        )
    kept = stored_indices(folder) if (folder / "index.json").is_file() else set()
    skipped = {}
    for i in sorted(set(range(len(files))) - kept):
        try:
            load_image(files[i], max_side=64)
            reason = f"cannot read image {files[i]} (it reads now: changed during preparation?)"
        except BadImageError as err:
            reason = str(err)
        log.warning("skipping unreadable image: %s", reason)
        skipped[str(files[i])] = reason
    if not kept:
        raise DataNotFoundError(
            f"none of the {len(files)} image files of the {folder.name} split could be read; "
            "check the files, or prepare another folder"
        )
    return skipped


def prepare(
    source: Path,
    out: Path,
    size: int = 286,
    quality: int = 95,
    workers: int | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    split_seed: int = 0,
) -> dict[str, Any]:
    """Shards of every split of ``source`` under ``out``, then ``out/prepared.json`` (written last: its presence
    means the shards are complete)."""
    check_places(source, out)
    folder = FolderDataModule(
        root=str(source), val_fraction=val_fraction, test_fraction=test_fraction, split_seed=split_seed
    )
    splits = folder.split_files()
    workers = workers or os.cpu_count() or 1
    info: dict[str, Any] = {
        "source": str(source.resolve()),
        "size": size,
        "quality": quality,
        "split_seed": split_seed,
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "prepared_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "splits": {},
    }
    for name in SPLITS:
        files = splits[name]
        print(f"{name}: {len(files)} photos -> {out / name}", file=sys.stderr, flush=True)
        skipped = prepare_split(files, source, out / name, size, quality, workers)
        info["splits"][name] = {
            "images": len(files) - len(skipped),
            "description": folder.split_description(name),
            "skipped": skipped,
        }
    total = sum(len(s["skipped"]) for s in info["splits"].values())
    if total:
        log.warning("%d unreadable image files were skipped (each logged above)", total)
    write_text_atomic(out / PREPARED_FILE, json.dumps(info, indent=2))
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m colorgan.data.prepare",
        description=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", type=Path, metavar="PHOTO_FOLDER", help="photos, with train/, val/, optional test/")
    parser.add_argument("--out", type=Path, required=True, help="new folder for the shards (then data.root=OUT)")
    parser.add_argument(
        "--size",
        type=int,
        default=286,
        help="shorter side of the stored photos (default 286: the load size of 256-px training, which then "
        "crops without resizing; use round(1.117 * data.image_size))",
    )
    parser.add_argument(
        "--quality",
        type=int,
        default=95,
        help="JPEG quality of the stored photos, 1-95 (default 95, with 4:4:4 chroma: the colours the model "
        "learns keep full resolution; about 50 KB a photo at 286 px)",
    )
    parser.add_argument("--workers", type=int, default=None, help="processes encoding photos (default: every core)")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="as data.val_fraction, when there is no val/")
    parser.add_argument("--test-fraction", type=float, default=0.1, help="as data.test_fraction, when no test/")
    parser.add_argument("--split-seed", type=int, default=0, help="as data.split_seed: seeds the carved splits")
    args = parser.parse_args(argv)
    if not 1 <= args.quality <= 95:
        return fail(
            parser.prog, f"--quality must be in 1..95 (above 95 JPEG files grow, not improve), got {args.quality}"
        )
    if not MIN_SIZE <= args.size <= MAX_SIZE:
        return fail(
            parser.prog,
            f"--size (the shorter side stored) must be {MIN_SIZE}..{MAX_SIZE} pixels, got {args.size}; "
            "use round(1.117 * data.image_size)",
        )
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("litdata").setLevel(logging.WARNING)  # its cache and mmap notes
    try:
        info = prepare(
            args.source,
            args.out,
            args.size,
            args.quality,
            args.workers,
            args.val_fraction,
            args.test_fraction,
            args.split_seed,
        )
    except (DataNotFoundError, OutputPlaceError, ValueError) as err:
        return fail(parser.prog, err)
    for split in info["splits"].values():
        print(f"{split['description']} -> {split['images']} prepared")
    print(f"train with: python train.py experiment=photos_pretrain data=shards data.root={args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
