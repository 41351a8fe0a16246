"""Photos from prepared shards (litdata): JPEG bytes streamed from a folder or an object store.

``python -m colorgan.data.prepare`` decodes, resizes and re-encodes each photo once; training then
only decodes a small JPEG and crops it. On a GPU even that moves to the device: batches carry the
bytes and nvJPEG decodes the whole batch at once in ``on_after_batch_transfer``. On a CPU the
loader workers decode. The splits were decided at preparation, by the folder loader's own rule.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from litdata import StreamingDataLoader, StreamingDataset
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms.v2.functional import InterpolationMode, resize

from colorgan.data.cifar10 import DataNotFoundError
from colorgan.data.datamodule import ColorizationDataModule
from colorgan.data.datasets import SkippedImages

log = logging.getLogger(__name__)
PREPARED_FILE = "prepared.json"  # what ``prepare`` made: sizes, split rules, skipped files
SPLITS = ("train", "val", "test")
DECODE_PLACES = ("auto", "workers", "device")
# torchvision 0.29 points to TorchCodec, which has no batched nvJPEG decoding to replace decode_jpeg with
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities", category=DeprecationWarning)


def crop_photo(rgb: torch.Tensor, image_size: int, load_size: int, crop: torch.Tensor | None) -> torch.Tensor:
    """A decoded 3 x H x W photo as data=folder crops it, on whatever device it lives.

    Training (``crop`` = three uniform numbers: left, top, flip) resizes the shorter side to
    ``load_size`` unless it is already, then crops a random square and flips half the time;
    evaluation (``crop`` None) resizes to ``image_size`` and crops the centre. Shards prepared at
    the load size (``--size 286`` for 256 px) need no resize at all.
    """
    target = load_size if crop is not None else image_size
    if min(rgb.shape[-2:]) != target:
        rgb = resize(rgb, [target], interpolation=InterpolationMode.BICUBIC, antialias=True)
    height, width = rgb.shape[-2:]
    if crop is None:
        top, left = (height - image_size) // 2, (width - image_size) // 2
    else:
        u, v, flip = crop.tolist()
        left, top = int(u * (width - image_size + 1)), int(v * (height - image_size + 1))
    rgb = rgb[:, top : top + image_size, left : left + image_size]
    return rgb.flip(-1) if crop is not None and flip < 0.5 else rgb


def jpeg_tensor(data: Any) -> torch.Tensor:
    """Encoded bytes (bytes, or litdata's read-only memoryview) as the 1-D uint8 tensor decoders take."""
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def decode_error(err: RuntimeError) -> str:
    """What the JPEG decoder said, without its source-file prefix (``decode_jpeg, .../decode_jpeg.cpp:171, ``)."""
    return re.sub(r"^.*?\.(?:cpp|cu):\d+,\s*", "", str(err).strip()).splitlines()[0] or "not a readable JPEG"


def unreadable_in_shards(path: str, err: RuntimeError) -> str:
    """The skip reason of a stored photo whose bytes do not decode (damaged after preparation, or not a JPEG)."""
    return f"cannot read image {path} (stored in the shards): {decode_error(err)}"


class ShardItem:
    """One prepared photo as a batch item: decoded and cropped here, or its bytes and crop draw for the device.

    The crop is drawn here, in the loader worker, in both cases, so the worker seeds decide it alike.
    Each item names its photo (``path``: the split's shard folder and the photo's path in the photo
    folder). A photo whose stored bytes do not decode becomes a black stand-in marked by ``bad_index``
    (its index) and ``skip_reason``, as data=folder marks the files it skips: the data module counts
    it and fills its place, and evaluation leaves it out.
    """

    def __init__(self, image_size: int, load_size: int, train: bool, decode: bool, folder: str = "shards") -> None:
        self.image_size, self.load_size, self.train, self.decode = image_size, load_size, train, decode
        self.folder = folder

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        crop = torch.rand(3) if self.train else None
        path = f"{self.folder}/{item.get('path', item['index'])}"
        out: dict[str, Any] = {"index": torch.tensor(item["index"]), "label": torch.tensor(-1), "path": path}
        if not self.decode:
            out["jpeg"] = bytes(item["jpeg"])
            if crop is not None:
                out["crop"] = crop
            return out
        try:
            rgb = decode_jpeg(jpeg_tensor(item["jpeg"]), mode=ImageReadMode.RGB)
        except RuntimeError as err:
            reason = unreadable_in_shards(path, err)
            rgb, bad = torch.zeros(3, self.image_size, self.image_size, dtype=torch.uint8), int(item["index"])
        else:
            rgb, bad, reason = crop_photo(rgb, self.image_size, self.load_size, crop).contiguous(), -1, ""
        return {**out, "rgb": rgb, "bad_index": torch.tensor(bad), "skip_reason": reason}


def decode_batch(
    jpegs: list[bytes], crops: torch.Tensor | None, device: torch.device, image_size: int, load_size: int
) -> tuple[torch.Tensor, list[RuntimeError | None]]:
    """A batch of JPEG bytes -> (B x 3 x S x S uint8 on ``device``, each photo's decoding error or None).

    Decoded there in one call (nvJPEG on CUDA); a batch holding bytes that do not decode is decoded
    one photo at a time to find them, and each of those is black.
    """
    try:
        images: list[torch.Tensor | None] = list(
            decode_jpeg([jpeg_tensor(j) for j in jpegs], mode=ImageReadMode.RGB, device=device)
        )
        errors: list[RuntimeError | None] = [None] * len(jpegs)
    except RuntimeError:
        images, errors = [], []
        for jpeg in jpegs:
            try:
                images.append(decode_jpeg(jpeg_tensor(jpeg), mode=ImageReadMode.RGB, device=device))
                errors.append(None)
            except RuntimeError as err:
                images.append(None)
                errors.append(err)
    crops = crops.cpu() if crops is not None else None
    black = torch.zeros(3, image_size, image_size, dtype=torch.uint8, device=device)
    return torch.stack(
        [
            black if im is None else crop_photo(im, image_size, load_size, None if crops is None else crops[i])
            for i, im in enumerate(images)
        ]
    ), errors


def fill_skipped(rgb: torch.Tensor, bad_index: torch.Tensor) -> torch.Tensor:
    """Each stand-in replaced by the next readable photo of the batch, as data=folder takes the next readable
    file: training never sees a black stand-in unless the whole batch is unreadable."""
    good = (bad_index < 0).nonzero().flatten()
    if len(good) == 0 or len(good) == len(bad_index):
        return rgb
    positions = torch.arange(len(bad_index), device=good.device)
    after = torch.searchsorted(good, positions) % len(good)  # the first readable one at or after each position
    return rgb[good[after]]


def _again(root: str) -> str:
    """The fix for damaged shards: they cannot be repaired in place."""
    return (
        f"the shards of data.root={root} are damaged: prepare the photo folder again into a new folder "
        "(`python -m colorgan.data.prepare PHOTO_FOLDER --out NEW`) and set data.root=NEW"
    )


def _parsed_prepared(path: Path, root: str) -> dict[str, Any]:
    """A local ``prepared.json``, or a message naming it when it is damaged (not JSON, or not what prepare writes)."""
    try:
        info = json.loads(path.read_text())
        if not isinstance(info, dict) or not isinstance(info.get("size"), int) or not isinstance(info["splits"], dict):
            raise ValueError("not the settings and splits that prepare writes")
        return info
    except (ValueError, KeyError, UnicodeDecodeError, OSError) as err:
        raise DataNotFoundError(f"{path} is damaged ({err}); {_again(root)}") from None


def check_chunks(folder: Path, root: str) -> None:
    """Every chunk a local split's ``index.json`` lists is there, whole: a truncated or missing chunk is named
    here rather than failing in a loader worker mid-epoch."""
    index = folder / "index.json"
    try:
        chunks = json.loads(index.read_text())["chunks"]
        expected = {str(c["filename"]): int(c["chunk_bytes"]) for c in chunks}
    except (ValueError, KeyError, TypeError, OSError) as err:
        raise DataNotFoundError(f"{index} is missing or damaged ({err}); {_again(root)}") from None
    for name, size in expected.items():
        chunk = folder / name
        actual = chunk.stat().st_size if chunk.is_file() else None
        if actual != size:
            state = "missing" if actual is None else f"truncated ({actual:,} of {size:,} bytes)"
            raise DataNotFoundError(f"the shard {chunk} is {state}; {_again(root)}")


def read_prepared(root: str) -> dict[str, Any]:
    """``prepared.json`` of ``root``, a folder or an object-store URL (s3://, gs://, ...)."""
    if "://" not in root:
        path = Path(root).expanduser() / PREPARED_FILE
        if not path.is_file():
            raise DataNotFoundError(
                f"data.root={root} holds no prepared shards ({path} is missing); make them with "
                f"`python -m colorgan.data.prepare PHOTO_FOLDER --out {root}`, or point data.root at such a folder"
            )
        return _parsed_prepared(path, root)
    from litdata.streaming.fs_provider import _get_fs_provider

    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / PREPARED_FILE
        try:
            _get_fs_provider(root).download_file(f"{root.rstrip('/')}/{PREPARED_FILE}", str(local))
            return json.loads(local.read_text())
        except Exception as err:  # credentials, network, a wrong prefix: the same fix
            raise DataNotFoundError(
                f"cannot read {root.rstrip('/')}/{PREPARED_FILE} ({type(err).__name__}: {err}); upload the whole "
                "folder `python -m colorgan.data.prepare` wrote, and check data.root and the storage credentials"
            ) from err


class ShardsDataModule(ColorizationDataModule):
    """Photos prepared by ``python -m colorgan.data.prepare``: the splits of data=folder, streamed.

    Augmentations are data=folder's (a random ``image_size`` crop of the photo at ``load_size``,
    flips; centre crops to evaluate). Each rank of a multi-GPU or multi-node run reads its own part
    of every epoch, and a run resumed from a mid-epoch checkpoint continues the stream where it
    stopped: the position of the training StreamingDataLoader travels in this module's
    ``state_dict``. (Lightning's own copy of it is restored only when the loader is made after the
    checkpoint is read; the module's optimizers ask for the epoch length, and so the loader, before.)
    """

    def __init__(
        self,
        root: str,
        image_size: int = 256,
        load_size: int | None = None,
        decode: str = "auto",
        shuffle_seed: int = 42,
        **loader_kwargs: Any,
    ) -> None:
        super().__init__(image_size=image_size, **loader_kwargs)
        if decode not in DECODE_PLACES:
            raise ValueError(f"data.decode must be one of {DECODE_PLACES}, got {decode!r}")
        self.root = str(root) if "://" in str(root) else str(Path(root).expanduser())
        self.load_size = load_size or round(image_size * 286 / 256)
        self.decode = decode
        self.shuffle_seed = shuffle_seed
        self.skipped_images = SkippedImages()
        self._prepared: dict[str, Any] | None = None
        self._train_loader: StreamingDataLoader | None = None
        self._train_position: dict[str, Any] | None = None  # from a checkpoint, for the next train loader

    @property
    def prepared(self) -> dict[str, Any]:
        if self._prepared is None:
            self._prepared = read_prepared(self.root)
            size = self._prepared["size"]
            if size < self.load_size:
                log.warning(
                    "data.root=%s was prepared at --size %d, below data.load_size=%d: photos are upscaled each "
                    "time; prepare again with --size %d for sharper crops and faster loading",
                    self.root,
                    size,
                    self.load_size,
                    self.load_size,
                )
        return self._prepared

    def decodes_on_device(self) -> bool:
        """Whether batches carry JPEG bytes to decode on the device (CUDA) rather than pixels."""
        if self.decode == "device":
            if not torch.cuda.is_available():
                raise ValueError("data.decode=device needs a CUDA device (nvJPEG); use data.decode=auto or workers")
            return True
        return self.decode == "auto" and self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"

    def split_description(self, split: str = "test") -> str:
        return self.prepared["splits"][split]["description"] + f", prepared as shards in {self.root}"

    def _dataset(self, split: str, train: bool) -> StreamingDataset:
        info = self.prepared["splits"].get(split)
        if not info or not info.get("images"):
            raise DataNotFoundError(f"data.root={self.root} has no prepared {split} split; prepare the folder again")
        self.skipped_images.reasons.update(info.get("skipped", {}))
        if "://" not in self.root:
            check_chunks(Path(self.root) / split, self.root)
        folder = f"{self.root.rstrip('/')}/{split}"
        item = ShardItem(self.image_size, self.load_size, train, decode=not self.decodes_on_device(), folder=folder)
        return StreamingDataset(
            f"{self.root.rstrip('/')}/{split}", shuffle=train, seed=self.shuffle_seed, transform=item
        )

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit", "validate") and self.train_set is None:
            self.train_set, self.val_set = self._dataset("train", True), self._dataset("val", False)
        if stage in (None, "test") and self.test_set is None:
            self.test_set = self._dataset("test", False)

    def _loader(self, dataset: Any, train: bool) -> StreamingDataLoader:
        if dataset is None:
            raise RuntimeError("call setup() before asking for a dataloader")
        return StreamingDataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            drop_last=train and len(dataset) > self.batch_size,  # a last batch of 1 breaks BatchNorm
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
        )

    def train_dataloader(self) -> StreamingDataLoader:
        self._train_loader = self._loader(self.train_set, train=True)
        if self._train_position is not None:
            self._train_loader.load_state_dict(self._train_position)
            self._train_position = None
        return self._train_loader

    def state_dict(self) -> dict[str, Any]:
        """Where the training stream is: saved in every checkpoint, so a resume continues mid-epoch."""
        return {"train_loader": self._train_loader.state_dict()} if self._train_loader is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._train_position = state_dict.get("train_loader")

    def decoded(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The batch with pixels: JPEG bytes decoded and cropped on the device the batch moved to."""
        if "jpeg" not in batch:
            return batch
        batch = dict(batch)
        jpegs, crops = batch.pop("jpeg"), batch.pop("crop", None)
        batch["rgb"], errors = decode_batch(jpegs, crops, batch["index"].device, self.image_size, self.load_size)
        batch["skip_reason"] = ["" if e is None else unreadable_in_shards(p, e) for p, e in zip(batch["path"], errors)]
        bad = [i if e is not None else -1 for i, e in zip(batch["index"].tolist(), errors)]
        batch["bad_index"] = torch.tensor(bad, device=batch["index"].device)
        return batch

    def skipped_filled(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Count each unreadable photo of the batch (logged once per run) and fill its place for training;
        ``bad_index`` stays, so evaluation scores each readable photo once."""
        bad = batch.get("bad_index")
        if not isinstance(bad, torch.Tensor) or not bool((bad >= 0).any()):
            return batch
        for path, reason in zip(batch["path"], batch["skip_reason"]):
            if reason:
                self.skipped_images.add(path, reason)
        return {**batch, "rgb": fill_skipped(batch["rgb"], bad)}

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        return super().on_after_batch_transfer(self.skipped_filled(self.decoded(batch)), dataloader_idx)

    def summary_fields(self) -> dict[str, Any]:
        """Added to the run summary: the files preparation skipped as unreadable."""
        return {"skipped_images": self.skipped_images.summary()}
