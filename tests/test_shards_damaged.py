"""Damaged shards (data=shards) stop before training with one message naming the damaged file and the fix."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from colorgan.data.cifar10 import DataNotFoundError
from colorgan.data.prepare import prepare
from colorgan.data.shards import ShardsDataModule
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
