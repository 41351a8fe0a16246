"""Damaged shards (data=shards): damaged metadata or chunks stop the run with one message naming the file and the fix;
a damaged photo inside a chunk is skipped and counted, as data=folder skips an unreadable file."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch
from litdata import StreamingDataset

from colorgan.data.cifar10 import DataNotFoundError
from colorgan.data.prepare import prepare
from colorgan.data.shards import ShardsDataModule, decode_batch, decode_error, fill_skipped
from tests.test_faults import evaluate_folder
from tests.test_shards import write_photos


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    for split, n, seed in (("train", 6, 0), ("val", 2, 1), ("test", 2, 2)):
        write_photos(root / split, n, seed)
    out = tmp_path_factory.mktemp("prepared") / "shards"
    prepare(root, out, size=36, workers=1)
    return out


@pytest.fixture
def shards(prepared: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(prepared, tmp_path / "shards"))


def setup_fit(root: Path) -> None:
    ShardsDataModule(str(root), image_size=32, num_workers=0).setup("fit")


def test_intact_shards_load(shards):
    setup_fit(shards)


@pytest.mark.parametrize("damage", [b"", b"{not json", b"[1, 2]", b'{"size": "big", "splits": {}}'])
def test_a_broken_prepared_json_is_named_with_the_fix(shards, damage):
    (shards / "prepared.json").write_bytes(damage)
    with pytest.raises(DataNotFoundError, match=f"{shards / 'prepared.json'} is damaged") as info:
        setup_fit(shards)
    assert "python -m colorgan.data.prepare" in str(info.value)


def test_a_truncated_chunk_is_named_with_the_fix(shards):
    chunk = next((shards / "train").glob("chunk-*.bin"))
    chunk.write_bytes(chunk.read_bytes()[:100])
    with pytest.raises(DataNotFoundError, match=f"the shard {chunk} is truncated") as info:
        setup_fit(shards)
    assert "prepare the photo folder again" in str(info.value)


def test_a_damaged_index_is_named_with_the_fix(shards):
    (shards / "val" / "index.json").write_text("{")
    with pytest.raises(DataNotFoundError, match=f"{shards / 'val' / 'index.json'} is missing or damaged"):
        setup_fit(shards)


# ------------------------------------------------------------------ photos damaged inside a chunk
def damage_a_stored_photo(split: Path, how: str) -> str:
    """Overwrite the bytes of the split's first stored photo inside its chunk (the chunk keeps its size, so
    only decoding finds it); returns the name the data module gives that photo."""
    item = StreamingDataset(str(split))[0]
    jpeg = bytes(item["jpeg"])
    for chunk in split.glob("chunk-*.bin"):
        data = bytearray(chunk.read_bytes())
        start = data.find(jpeg)
        if start >= 0:
            if how == "not a JPEG":
                data[start : start + 4] = b"GIF8"
            else:  # the header survives, the picture data does not
                keep = len(jpeg) // 3
                data[start + keep : start + len(jpeg)] = bytes(len(jpeg) - keep)
            chunk.write_bytes(bytes(data))
            return f"{split}/{item['path']}"
    raise AssertionError(f"no chunk of {split} holds the first photo")


DAMAGE = ["not a JPEG", "corrupt bytes"]


@pytest.mark.parametrize("how", DAMAGE)
def test_training_skips_a_damaged_stored_photo_counting_and_logging_it_once(shards, how, caplog):
    bad = damage_a_stored_photo(shards / "train", how)
    caplog.set_level(logging.WARNING)
    dm = ShardsDataModule(str(shards), image_size=32, batch_size=3, num_workers=1)  # decoded in a worker process
    dm.setup("fit")
    loader = dm.train_dataloader()
    for _epoch in range(2):
        for batch in loader:
            batch = dm.on_after_batch_transfer(batch, 0)
            assert batch["L"].shape == (3, 1, 32, 32)
            black = batch["rgb"].flatten(1).amax(1) == 0
            assert not black.any()  # the stand-in's place is filled by a readable photo of the batch
    assert dm.summary_fields()["skipped_images"] == {"count": 1, "files": [bad]}
    warnings = [r.getMessage() for r in caplog.records if "skipping unreadable image" in r.getMessage()]
    assert len(warnings) == 1 and bad in warnings[0] and "stored in the shards" in warnings[0]


@pytest.mark.parametrize("how", DAMAGE)
def test_evaluation_scores_each_readable_stored_photo_once_and_reports_the_damaged_one(make_cfg, shards, tmp_path, how):
    bad = damage_a_stored_photo(shards / "test", how)
    report = evaluate_folder(make_cfg, shards, tmp_path / "eval", data="shards")
    assert report["num_images"] == 1  # of the 2 test photos
    skipped = report["skipped_images"]
    assert skipped["count"] == 1 and skipped["files"] == [bad] and "stored in the shards" in skipped["reasons"][0]


def test_device_decoding_finds_the_damaged_photo_of_a_batch_and_its_place_is_filled(shards):
    items = StreamingDataset(str(shards / "train"))
    jpegs = [bytes(items[i]["jpeg"]) for i in range(3)]
    jpegs[1] = b"GIF8" + jpegs[1][4:]
    rgb, errors = decode_batch(jpegs, None, torch.device("cpu"), 32, 36)
    assert [e is None for e in errors] == [True, False, True] and "Not a JPEG" in decode_error(errors[1])
    assert int(rgb[1].max()) == 0 and int(rgb[0].max()) > 0
    filled = fill_skipped(rgb, torch.tensor([-1, 7, -1]))
    assert torch.equal(filled[1], rgb[2]) and torch.equal(filled[0], rgb[0])
    assert torch.equal(fill_skipped(rgb, torch.tensor([4, -1, 5]))[2], rgb[1])  # after the last: wraps around
