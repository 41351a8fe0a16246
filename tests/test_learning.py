"""Learning is tested, not assumed: a few dozen L1 steps on real CIFAR-10 beat the gray baseline."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from colorgan.color import rgb_to_lab_normalized
from colorgan.train.build import build
from tests.conftest import ROOT, smooth_images

SHARED_CIFAR = Path(os.environ.get("COLORGAN_DATA_DIR", ROOT.parent / "shared" / "data")) / "cifar10"
TRAIN_IMAGES, VAL_IMAGES = 3072, 512


def colour_follows_lightness(n: int) -> np.ndarray:
    """Smooth random fields coloured by a fixed map (dark blue -> light orange): colour is learnable from L."""
    t = smooth_images(n, 32, seed=0)[..., :1].astype(np.float64) / 255.0
    rgb = np.concatenate([0.2 + 0.8 * t, 0.1 + 0.7 * t**2, 0.6 - 0.5 * t], axis=-1)
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def cifar_subset(folder: Path) -> str:
    """Real CIFAR-10 images when the data set is beside the project, else learnable synthetic ones."""
    out = folder / "cifar10"
    out.mkdir(parents=True)
    if (SHARED_CIFAR / "train.npz").is_file():
        with np.load(SHARED_CIFAR / "train.npz") as data:
            images, labels = data["images"][: TRAIN_IMAGES + VAL_IMAGES], data["labels"][: TRAIN_IMAGES + VAL_IMAGES]
    else:
        images = colour_follows_lightness(TRAIN_IMAGES + VAL_IMAGES)
        labels = np.zeros(len(images), dtype=np.int64)
    for split in ("train", "test"):
        np.savez(out / f"{split}.npz", images=images, labels=labels)
    return str(folder)


@pytest.mark.slow
def test_a_few_dozen_l1_steps_beat_the_gray_baseline(make_cfg, tmp_path):
    data_dir = cifar_subset(tmp_path / "data")
    cfg = make_cfg(
        [
            "experiment=cifar_pretrain",
            f"paths.data_dir={data_dir}",
            "trainer.accelerator=cpu",
            "trainer.max_epochs=2",
            "trainer.num_sanity_val_steps=0",
            "trainer.precision=32-true",
            "callbacks=none",
            "logger=[]",
            "seed=0",
            f"data.val_size={VAL_IMAGES}",
            "data.batch_size=64",
            "model.generator.ngf=16",
            "model.lr=1e-3",
        ]
    )
    datamodule, model, trainer = build(cfg)
    trainer.fit(model, datamodule=datamodule)
    assert trainer.global_step == 2 * (TRAIN_IMAGES // 64) == 96
    val_rgb = torch.cat([batch["rgb"] for batch in datamodule.val_dataloader()])
    assert len(val_rgb) == VAL_IMAGES
    l1_gray = rgb_to_lab_normalized(val_rgb)[1].abs().mean().item()  # gray predicts ab = 0: its L1 is mean |ab|
    l1_model = float(trainer.callback_metrics["val/l1_ab"])
    assert l1_model < 0.97 * l1_gray, f"val L1 {l1_model:.4f} vs gray {l1_gray:.4f}"
