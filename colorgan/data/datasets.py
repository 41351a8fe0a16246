"""Datasets that yield uint8 RGB tensors; colour conversion happens later, on the device."""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import multiprocessing.util  # registers its exit hook now, so that ours below runs before it
import random
import signal
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, get_worker_info

from colorgan.data.cifar10 import DataNotFoundError
from colorgan.data.images import BadImageError, load_image, load_rgb

log = logging.getLogger(__name__)
BAD_IMAGE_POLICIES = ("skip", "error")
MAX_ASPECT_RATIO = 4.0  # longer side / shorter side kept before resizing; more is centre-cropped
WORKER_SIGTERM_GRACE_S = 30  # what schedulers usually allow between SIGTERM and SIGKILL (SLURM, Kubernetes)
_worker_defers_sigterm = False


def _defer_sigterm_in_worker() -> None:
    """In a loader worker, turn SIGTERM into an exit ``WORKER_SIGTERM_GRACE_S`` seconds later.

    Schedulers signal every process of a job. A worker dying at once would make the main
    process fail mid-batch, before it can save; deferred, the main process finishes the batch,
    saves ``last.ckpt`` and shuts the loader down, which ends the worker at once. A worker the
    main process terminates and never shuts down still ends, after the grace period.
    """
    global _worker_defers_sigterm
    if not _worker_defers_sigterm and hasattr(signal, "alarm") and get_worker_info() is not None:
        signal.signal(signal.SIGTERM, lambda signum, frame: signal.alarm(WORKER_SIGTERM_GRACE_S))
        _worker_defers_sigterm = True


@atexit.register
def _end_leaked_workers() -> None:
    """At exit, kill loader workers nobody shut down: multiprocessing would SIGTERM them, now deferred."""
    leaked = [child for child in multiprocessing.active_children() if child.daemon]
    if leaked and hasattr(signal, "SIGCHLD"):
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # torch's handler would report each as a failure
        for child in leaked:
            child.kill()


class TensorImageDataset(Dataset):
    """Images already in memory as a uint8 N x 3 x H x W tensor (CIFAR-10)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, flip: bool = False) -> None:
        self.images, self.labels, self.flip = images, labels, flip

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        _defer_sigterm_in_worker()
        image = self.images[index]
        if self.flip and torch.rand(()) < 0.5:
            image = image.flip(-1)
        return {"rgb": image, "label": self.labels[index]}


class FolderDataset(Dataset):
    """Photos from a list of files, resized and cropped to ``image_size`` squares.

    Training resizes the shorter side to ``load_size`` then crops randomly and flips (pix2pix's
    ``resize_and_crop``); evaluation resizes to ``image_size`` and crops the centre. A file that
    cannot be decoded is skipped (``on_bad_image='skip'``: the next readable file takes its place
    and the item's ``bad_index`` names the bad one, -1 when none, so the run can count it) or
    stops the run (``'error'``). Strips longer than 4:1 are centre-cropped to 4:1 first, so a
    1 x 5000 file cannot blow up into a 286 x 1,430,000 resize.
    """

    def __init__(
        self,
        files: list[Path],
        image_size: int = 256,
        load_size: int | None = None,
        train: bool = False,
        on_bad_image: str = "skip",
    ) -> None:
        if on_bad_image not in BAD_IMAGE_POLICIES:
            raise ValueError(f"data.on_bad_image must be one of {BAD_IMAGE_POLICIES}, got {on_bad_image!r}")
        self.files = list(files)
        self.image_size = image_size
        self.load_size = load_size if (train and load_size) else image_size
        self.train = train
        self.on_bad_image = on_bad_image
        self._reported: dict[int, str] = {}  # index -> reason, logged by this process

    def __len__(self) -> int:
        return len(self.files)

    def _transform(self, img: Image.Image) -> torch.Tensor:
        img = resize_shorter_side(img, self.load_size)
        crop = self.image_size
        if self.train:
            left, top = random.randint(0, img.width - crop), random.randint(0, img.height - crop)
        else:
            left, top = (img.width - crop) // 2, (img.height - crop) // 2
        img = img.crop((left, top, left + crop, top + crop))
        if self.train and random.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).contiguous()

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        _defer_sigterm_in_worker()
        first_bad = -1
        for attempt in range(len(self.files)):
            i = (index + attempt) % len(self.files)
            try:
                img = load_rgb(self.files[i], max_side=4 * self.load_size)
            except BadImageError as err:
                if self.on_bad_image == "error":
                    raise BadImageError(err.path, f"{err.reason} ({STOP_HINT})") from err
                if i not in self._reported:
                    self._reported[i] = str(err)
                    # in a loader worker the main process logs it (SkippedImages), once per run
                    level = logging.WARNING if get_worker_info() is None else logging.DEBUG
                    log.log(level, "skipping unreadable image: %s", err)
                first_bad = i if first_bad < 0 else first_bad
                continue
            return {"rgb": self._transform(img), "label": torch.tensor(-1), "bad_index": torch.tensor(first_bad)}
        raise BadImageError(self.files[index], "no file in this dataset could be read")

    def reason(self, index: int) -> str:
        """Why file ``index`` was skipped; decoded again here when a loader worker met it."""
        if index in self._reported:
            return self._reported[index]
        try:
            load_image(self.files[index], max_side=64)
        except BadImageError as err:
            return str(err)
        return f"cannot read image {self.files[index]} (it reads now: changed during the run?)"


STOP_HINT = "data.on_bad_image=error; set data.on_bad_image=skip to skip such files"


def resize_shorter_side(img: Image.Image, size: int) -> Image.Image:
    """Bicubic resize to shorter side ``size`` after clamping the aspect ratio to 4:1 (the folder loader's
    first step, and what ``python -m colorgan.data.prepare`` stores)."""
    img = _clamp_aspect(img, MAX_ASPECT_RATIO)
    scale = size / min(img.size)
    return img.resize(
        (max(size, round(img.width * scale)), max(size, round(img.height * scale))), Image.Resampling.BICUBIC
    )


def _clamp_aspect(img: Image.Image, max_ratio: float) -> Image.Image:
    """Centre-crop an extreme strip to ``max_ratio`` so resizing its shorter side stays bounded."""
    w, h = img.size
    if w > max_ratio * h:
        keep = max(1, round(max_ratio * h))
        return img.crop(((w - keep) // 2, 0, (w - keep) // 2 + keep, h))
    if h > max_ratio * w:
        keep = max(1, round(max_ratio * w))
        return img.crop((0, (h - keep) // 2, w, (h - keep) // 2 + keep))
    return img


def check_readable(files: list[Path], where: str, on_bad_image: str = "skip") -> None:
    """Stop before training when not one of ``files`` decodes, naming ``where`` (the folder).

    Reads files in order until the first good one, so a healthy folder costs one decode; only
    a folder of bad files is read to the end. With ``on_bad_image='error'`` the first bad file
    stops the run here, before any model is trained.
    """
    first_error: BadImageError | None = None
    for path in files:
        try:
            load_image(path, max_side=64)
            return
        except BadImageError as err:
            if on_bad_image == "error":
                raise BadImageError(err.path, f"{err.reason} ({STOP_HINT})") from err
            first_error = first_error or err
    raise DataNotFoundError(
        f"none of the {len(files)} image files {where} could be read ({first_error}); "
        "check the files, or point data.root at another folder"
    )


class SkippedImages:
    """Unreadable files met during a run: each logged once and counted for the run summary.

    Loader workers are separate processes, so their datasets cannot share what they skipped;
    the ``bad_index`` of each item travels back with the batch and is tallied here, in the
    main process, with the reason looked up once per file.
    """

    def __init__(self, max_listed: int = 20) -> None:
        self.reasons: dict[str, str] = {}
        self.max_listed = max_listed

    def update(self, dataset: Any, bad_index: torch.Tensor | None) -> None:
        if bad_index is None or not isinstance(dataset, FolderDataset) or not bool((bad_index >= 0).any()):
            return
        for i in sorted(set(bad_index[bad_index >= 0].tolist())):
            path = str(dataset.files[i])
            if path not in self.reasons:
                logged_here = i in dataset._reported  # num_workers=0: the dataset has logged it already
                self.add(path, dataset.reason(i), log_it=not logged_here)

    def add(self, path: str, reason: str, log_it: bool = True) -> None:
        """Count ``path`` as skipped for ``reason``, logging it the first time only."""
        if path in self.reasons:
            return
        self.reasons[path] = reason
        if log_it:
            log.warning("skipping unreadable image: %s", reason)

    def summary(self) -> dict[str, Any]:
        files = sorted(self.reasons)
        return {"count": len(files), "files": files[: self.max_listed]}


def drop_skipped(batch: dict[str, Any]) -> dict[str, Any]:
    """Leave out the items standing in for unreadable files, so evaluation scores each image once."""
    bad = batch.get("bad_index")
    if not isinstance(bad, torch.Tensor) or not bool((bad >= 0).any()):
        return batch
    keep = bad < 0
    return {k: v[keep] if isinstance(v, torch.Tensor) and v.shape[:1] == keep.shape else v for k, v in batch.items()}
