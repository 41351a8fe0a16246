"""Batches cut from images that already live on the training device: no loader, no workers, no copies."""

from __future__ import annotations

import torch


class DeviceBatches:
    """Batches sliced from a uint8 tensor that already lives on the training device.

    For data sets that fit in device memory (CIFAR-10 is 150 MB as uint8) this replaces the
    DataLoader: one ``randperm`` per epoch, batched gather and flips on the device, no per-image
    Python, no workers, no host-to-device copies. Under DDP each rank takes every
    ``world_size``-th batch of one shared permutation, so ranks see disjoint data.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        shuffle: bool,
        flip: bool = False,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        translate: int = 0,
    ) -> None:
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.flip, self.drop_last = batch_size, shuffle, flip, drop_last
        self.translate = translate
        self.rank, self.world_size, self.seed, self.epoch = rank, world_size, seed, 0

    def _num_batches(self) -> int:
        n = len(self.images)
        total = n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        return total // self.world_size if self.world_size > 1 else total

    def __len__(self) -> int:
        return self._num_batches()

    def __iter__(self):
        device = self.images.device
        if self.shuffle and self.world_size > 1:  # ranks must share one permutation: seed it
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(len(self.images), generator=generator).to(device)
        elif self.shuffle:  # the global RNG, so ``seed=S`` makes the order reproducible
            order = torch.randperm(len(self.images)).to(device)
        else:
            order = torch.arange(len(self.images), device=device)
        self.epoch += 1
        for b in range(self._num_batches()):
            start = (b * self.world_size + self.rank) * self.batch_size
            idx = order[start : start + self.batch_size]
            images = self.images.index_select(0, idx)
            if self.flip:
                flip = torch.rand(len(idx), device=device) < 0.5
                images = torch.where(flip[:, None, None, None], images.flip(-1), images)
            if self.translate:
                images = random_translate(images, self.translate)
            yield {"rgb": images, "label": self.labels.index_select(0, idx)}


def random_translate(images: torch.Tensor, pixels: int) -> torch.Tensor:
    """Shift each image by up to ``pixels`` in x and y, filling from a reflection: the random crop of a
    reflect-padded image, as CIFAR classifiers train, batched on the images' device.

    The small U-Net memorises CIFAR-10's 45,000 images within a few epochs; shifted copies are new
    inputs with the same colours, so it has to learn colour from content rather than position.
    """
    b, _, h, w = images.shape
    padded = torch.nn.functional.pad(images.float(), (pixels, pixels, pixels, pixels), mode="reflect")
    dy, dx = (torch.randint(0, 2 * pixels + 1, (b,), device=images.device) for _ in range(2))
    rows = (dy[:, None] + torch.arange(h, device=images.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, None, :]
    batch = torch.arange(b, device=images.device)[:, None, None, None]
    channel = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
    return padded[batch, channel, rows, cols].to(images.dtype)
