"""Prepared shards (data=shards): the folder loader's splits and pixels, disjoint DDP ranks, mid-epoch resume."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from litdata import StreamingDataset
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

from colorgan.data.cifar10 import DataNotFoundError
from colorgan.data.datasets import resize_shorter_side
from colorgan.data.folder import FolderDataModule
from colorgan.data.images import load_rgb
from colorgan.data.prepare import main as prepare_main
from colorgan.data.prepare import prepare
from colorgan.data.shards import ShardItem, ShardsDataModule, crop_photo, decode_batch, jpeg_tensor
from colorgan.train.build import build
from tests.cli import run_script
from tests.conftest import TINY_MODEL, smooth_images

IMAGE_SIZE, LOAD_SIZE = 32, 36  # LOAD_SIZE = round(32 * 286 / 256): what data=shards crops from


def write_photos(folder: Path, n: int, seed: int) -> None:
    folder.mkdir(parents=True)
    for i, img in enumerate(smooth_images(n, 64, seed)):
        name = f"photo_{i:02d}.{'png' if i % 3 else 'jpg'}"
        Image.fromarray(img).resize((40 + 3 * i, 38 + i % 5)).save(folder / name)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/ 24 photos, val/ 4, test/ 4: each split its own folder."""
    root = tmp_path_factory.mktemp("photos")
    for split, n, seed in (("train", 24, 0), ("val", 4, 1), ("test", 4, 2)):
        write_photos(root / split, n, seed)
    return root


@pytest.fixture(scope="module")
def shards(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("prepared") / "shards"
    prepare(photos, out, size=LOAD_SIZE, workers=2)
    return out


def stored_items(folder: Path) -> list[dict]:
    dataset = StreamingDataset(str(folder))
    return [dataset[i] for i in range(len(dataset))]


def relative_files(files: list[Path], root: Path) -> list[str]:
    return [f.relative_to(root).as_posix() for f in files]


def test_prepare_keeps_the_folder_splits_and_reports_each_bad_file_once(tmp_path, caplog):
    source = tmp_path / "photos"
    write_photos(source / "train", 20, 3)  # no test/: carved out of train/ by the folder loader's hash
    write_photos(source / "val", 3, 4)
    bad = source / "train" / "photo_05b.jpg"
    bad.write_bytes(b"not a jpeg")
    with caplog.at_level(logging.WARNING, logger="colorgan"):
        info = prepare(source, tmp_path / "shards", size=LOAD_SIZE, workers=2)

    expected = FolderDataModule(root=str(source)).split_files()
    for split in ("train", "val", "test"):
        items = stored_items(tmp_path / "shards" / split)
        wanted = [f for f in expected[split] if f != bad]
        assert sorted(item["path"] for item in items) == relative_files(wanted, source)
        for item in items:  # index: the photo's place in the split's sorted file list
            assert expected[split][item["index"]].relative_to(source).as_posix() == item["path"]
        assert info["splits"][split]["images"] == len(wanted)
        assert info["splits"][split]["description"] == FolderDataModule(root=str(source)).split_description(split)
    assert "carved from train/" in info["splits"]["test"]["description"]
    stored = decode_jpeg(jpeg_tensor(items[0]["jpeg"]))
    assert min(stored.shape[-2:]) == LOAD_SIZE

    reports = [r.getMessage() for r in caplog.records if "skipping unreadable image" in r.getMessage()]
    assert reports == [f"skipping unreadable image: cannot read image {bad}: " + reports[0].split(": ", 2)[2]]
    assert "not an image" in reports[0]  # the folder loader's reason, in the folder loader's words
    assert list(info["splits"]["train"]["skipped"]) == [str(bad)]
    assert json.loads((tmp_path / "shards" / "prepared.json").read_text())["size"] == LOAD_SIZE


@pytest.mark.parametrize("inside", ["", "shards", "train/shards"])
def test_prepare_refuses_an_output_inside_the_photo_folder(photos, inside, capsys):
    assert prepare_main([str(photos), "--out", str(photos / inside)]) == 1
    err = capsys.readouterr().err
    assert f"is inside the photo folder {photos}" in err and "choose a folder outside it" in err
    assert not (photos / "shards").exists() and not (photos / "train" / "shards").exists()


def test_missing_shards_name_the_prepare_command(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"python -m colorgan\.data\.prepare PHOTO_FOLDER --out"):
        ShardsDataModule(root=str(tmp_path / "none")).setup("fit")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_decoding_on_a_device_without_cuda_is_refused_with_the_fix(shards):
    with pytest.raises(ValueError, match=r"data\.decode=device needs a CUDA device.*use data\.decode=auto or workers"):
        ShardsDataModule(root=str(shards), decode="device").setup("fit")


def test_worker_decode_and_crop_match_the_pil_path(photos, shards):
    """Training crops: the stored photo decoded by torchvision against PIL's resize of the original."""
    for item in stored_items(shards / "train")[:6]:
        stored = decode_jpeg(jpeg_tensor(item["jpeg"]), mode=ImageReadMode.RGB)
        pil = resize_shorter_side(load_rgb(photos / item["path"]), LOAD_SIZE)
        assert tuple(stored.shape[-2:]) == (pil.height, pil.width)
        for u, v, flip in ((0.0, 0.0, 0.9), (0.999, 0.999, 0.1), (0.5, 0.3, 0.7)):
            ours = crop_photo(stored, IMAGE_SIZE, LOAD_SIZE, torch.tensor([u, v, flip]))
            left, top = int(u * (pil.width - IMAGE_SIZE + 1)), int(v * (pil.height - IMAGE_SIZE + 1))
            theirs = pil.crop((left, top, left + IMAGE_SIZE, top + IMAGE_SIZE))
            if flip < 0.5:
                theirs = theirs.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            diff = (ours.float() - torch.from_numpy(np.array(theirs)).permute(2, 0, 1).float()).abs()
            assert diff.mean() < 1.5 and diff.max() <= 24  # JPEG at quality 95, 4:4:4


def test_evaluation_batches_match_the_folder_loader(photos, shards):
    """Val and test: the same photos in the same order as data=folder, centre crops within JPEG error."""
    ours = ShardsDataModule(root=str(shards), image_size=IMAGE_SIZE, batch_size=4, num_workers=0)
    folder = FolderDataModule(root=str(photos), image_size=IMAGE_SIZE, batch_size=4, num_workers=0)
    ours.setup(), folder.setup()
    for split in ("val", "test"):
        shard_batch = next(iter(getattr(ours, f"{split}_dataloader")()))
        folder_batch = next(iter(getattr(folder, f"{split}_dataloader")()))
        assert sorted(shard_batch["index"].tolist()) == [0, 1, 2, 3]
        rgb = shard_batch["rgb"][shard_batch["index"].argsort()]
        diff = (rgb.float() - folder_batch["rgb"].float()).abs()
        assert rgb.shape == folder_batch["rgb"].shape == (4, 3, IMAGE_SIZE, IMAGE_SIZE)
        assert diff.mean() < 2.0  # resized twice (to 36 when prepared, then 32) against once
        assert ours.split_description(split).startswith(folder.split_description(split))
    lab = ours.on_after_batch_transfer(shard_batch, 0)
    assert lab["L"].shape == (4, 1, IMAGE_SIZE, IMAGE_SIZE) and lab["ab"].shape == (4, 2, IMAGE_SIZE, IMAGE_SIZE)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="nvJPEG decoding needs CUDA")
def test_gpu_decode_matches_worker_decode(shards):
    items = stored_items(shards / "train")[:8]
    crops = torch.rand(len(items), 3)
    on_gpu, errors = decode_batch([bytes(i["jpeg"]) for i in items], crops, torch.device("cuda"), IMAGE_SIZE, LOAD_SIZE)
    assert errors == [None] * len(items)
    on_cpu = torch.stack(
        [
            crop_photo(decode_jpeg(jpeg_tensor(i["jpeg"]), mode=ImageReadMode.RGB), IMAGE_SIZE, LOAD_SIZE, c)
            for i, c in zip(items, crops)
        ]
    )
    diff = (on_gpu.cpu().float() - on_cpu.float()).abs()
    assert on_gpu.is_cuda and diff.mean() < 1.0 and diff.max() <= 16  # nvJPEG's IDCT against libjpeg-turbo's


def test_items_carry_bytes_and_crop_draws_for_device_decoding(shards):
    raw = stored_items(shards / "train")[0]
    item = ShardItem(IMAGE_SIZE, LOAD_SIZE, train=True, decode=False)(raw)
    assert isinstance(item["jpeg"], bytes) and item["crop"].shape == (3,) and "rgb" not in item
    device_batch = {"jpeg": [item["jpeg"]], "crop": item["crop"][None], "index": item["index"][None]}
    rgb, _ = decode_batch(device_batch["jpeg"], device_batch["crop"], torch.device("cpu"), IMAGE_SIZE, LOAD_SIZE)
    stored = decode_jpeg(jpeg_tensor(raw["jpeg"]), mode=ImageReadMode.RGB)
    assert torch.equal(rgb[0], crop_photo(stored, IMAGE_SIZE, LOAD_SIZE, item["crop"]))


# ------------------------------------------------------------------ training: resume and DDP
def shard_overrides(shards: Path, *extra: str) -> list[str]:
    return [
        "data=shards",
        f"data.root={shards}",
        f"data.image_size={IMAGE_SIZE}",
        "data.batch_size=4",
        "model.generator.ngf=8",
        *TINY_MODEL,
        "model/discriminator=none",
        "logger=csv",
        "trainer.max_epochs=1",
        "trainer.limit_val_batches=0",
        "trainer.num_sanity_val_steps=0",
        *extra,
    ]


class Interrupted(Exception):
    """Stands for a crash or a pre-emption mid-epoch."""


class SeenIds(Callback):
    """The ids of each training batch; raises at batch ``stop_at`` (after the checkpoint of the batch before)."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.ids: list[int] = []
        self.stop_at = stop_at

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: dict, batch_idx: int) -> None:
        if batch_idx == self.stop_at:
            raise Interrupted
        self.ids += batch["index"].tolist()


def test_resume_from_a_mid_epoch_checkpoint_sees_exactly_the_rest_of_the_epoch(shards, make_cfg, tmp_path):
    overrides = shard_overrides(
        shards,
        "trainer.accelerator=cpu",
        "trainer.precision=32-true",
        "data.num_workers=1",
        "callbacks.last_checkpoint.every_n_batches=2",
    )
    datamodule, model, trainer = build(make_cfg(overrides, output_dir=tmp_path / "run"))
    first = SeenIds(stop_at=2)
    trainer.callbacks.append(first)
    with pytest.raises(Interrupted):
        trainer.fit(model, datamodule=datamodule)
    assert len(first.ids) == 8

    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    datamodule, model, trainer = build(make_cfg([*overrides, f"ckpt_path={ckpt}"], output_dir=tmp_path / "resumed"))
    rest = SeenIds()
    trainer.callbacks.append(rest)
    trainer.fit(model, datamodule=datamodule, ckpt_path=str(ckpt))
    assert len(rest.ids) == 16 and not set(rest.ids) & set(first.ids)
    assert sorted(first.ids + rest.ids) == list(range(24))


class RankIds(Callback):
    """Each rank writes rank<N>.json: the sample ids it trained on."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir, self.ids = Path(out_dir), []

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: dict, batch_idx: int) -> None:
        self.ids += batch["index"].tolist()

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(self.ids))


@pytest.mark.slow
@pytest.mark.distributed
def test_ddp_ranks_read_disjoint_parts_that_cover_the_epoch(shards, tmp_path):
    ranks = tmp_path / "ranks"
    overrides = shard_overrides(
        shards,
        "trainer=ddp_sim",
        "data.num_workers=0",
        f"hydra.run.dir={tmp_path / 'run'}",
        f"+callbacks.rank_ids._target_={RankIds.__module__}.RankIds",
        f"+callbacks.rank_ids.out_dir={ranks}",
    )
    proc = run_script("train.py", *overrides)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    rank0, rank1 = (json.loads((ranks / f"rank{r}.json").read_text()) for r in (0, 1))
    assert len(rank0) == len(rank1) == 12
    assert not set(rank0) & set(rank1) and sorted(rank0 + rank1) == list(range(24))
