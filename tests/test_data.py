"""Data delivery: device-resident CIFAR batches and the datamodule's on-device Lab conversion."""

from __future__ import annotations

import torch

from colorgan.color import rgb_to_lab_normalized
from colorgan.data.cifar10_datamodule import CIFAR10DataModule
from colorgan.data.device_batches import DeviceBatches


def numbered_images(n: int) -> torch.Tensor:
    """Image i has pixel value i in its top-left corner and a different right edge, to spot flips."""
    images = torch.zeros(n, 3, 4, 4, dtype=torch.uint8)
    images[:, :, 0, 0] = torch.arange(n, dtype=torch.uint8)[:, None]
    images[:, :, :, -1] = 255
    return images


def test_each_epoch_visits_every_image_once_in_a_new_order():
    images = numbered_images(40)
    batches = DeviceBatches(images, torch.arange(40), batch_size=8, shuffle=True)
    epochs = [torch.cat([b["label"] for b in batches]) for _ in range(2)]
    for order in epochs:
        assert sorted(order.tolist()) == list(range(40))
    assert not torch.equal(epochs[0], epochs[1])
    assert len(batches) == 5


def test_flips_mirror_about_half_the_images_with_their_labels_kept():
    images = numbered_images(200)
    batch = next(iter(DeviceBatches(images, torch.arange(200), batch_size=200, shuffle=True, flip=True)))
    flipped = (batch["rgb"][:, 0, :, 0] == 255).all(dim=1)  # the bright right edge moved to the left
    assert 60 < flipped.sum() < 140
    unflipped_ids = batch["rgb"][~flipped, 0, 0, 0].long()
    assert torch.equal(unflipped_ids, batch["label"][~flipped])


def test_ranks_get_disjoint_shards_of_one_permutation():
    images, labels = numbered_images(64), torch.arange(64)
    shards = [
        torch.cat([b["label"] for b in DeviceBatches(images, labels, 8, shuffle=True, rank=r, world_size=2, seed=5)])
        for r in (0, 1)
    ]
    assert len(shards[0]) == len(shards[1]) == 32
    assert set(shards[0].tolist()).isdisjoint(shards[1].tolist())


def test_cifar_datamodule_converts_to_lab_after_transfer(data_dir):
    dm = CIFAR10DataModule(data_dir=str(data_dir), val_size=16, batch_size=8)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["rgb"].dtype == torch.uint8 and batch["rgb"].shape == (8, 3, 32, 32)
    out = dm.on_after_batch_transfer(batch, 0)
    L, ab = rgb_to_lab_normalized(batch["rgb"])
    assert torch.equal(out["L"], L) and torch.equal(out["ab"], ab) and out["L"].dtype == torch.float32
    assert len(dm.train_set) == 48 and len(dm.val_set) == 16  # the seeded validation slice of train
