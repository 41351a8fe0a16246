"""Fixtures: tiny data sets made on the fly and Hydra configs composed as train.py would."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
os.environ.setdefault("COLORGAN_ROOT", str(ROOT))
os.environ.setdefault("WANDB_MODE", "offline")

# Small networks keep every training test to seconds on a 2-core CPU.
# How long a test waits for a process or a file before calling it stuck: a hang guard, never what a test
# asserts. Whatever it waits for comes at a known point of the work, so a busy machine only makes it later.
HANG_GUARD_S = 1800
TINY_MODEL = ["model.num_samples=4"]


def smooth_images(n: int, size: int, seed: int) -> np.ndarray:
    """Colourful but learnable images: smooth gradients with a random hue per image."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    base = rng.uniform(0, 1, size=(n, 1, 1, 3))
    slope = rng.uniform(-0.5, 0.5, size=(n, 1, 1, 3))
    img = base + slope * (xx[None, :, :, None] + yy[None, :, :, None]) / 2
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


@pytest.fixture(scope="session", autouse=True)
def private_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``trainer.precision=auto`` caches its measurement (colorgan/precision.py) here, not in ~/.cache."""
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COLORGAN_CACHE_DIR", str(folder))
        yield folder


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data_dir with cifar10/{train,test}.npz (64 + 24 images) and photos256/{train,val}."""
    root = tmp_path_factory.mktemp("data")
    cifar = root / "cifar10"
    cifar.mkdir()
    for split, n, seed in (("train", 64, 0), ("test", 24, 1)):
        labels = np.arange(n, dtype=np.int64) % 10
        np.savez(cifar / f"{split}.npz", images=smooth_images(n, 32, seed), labels=labels)
    for split, n, seed in (("train", 6, 2), ("val", 3, 3)):
        folder = root / "photos256" / split
        folder.mkdir(parents=True)
        for i, img in enumerate(smooth_images(n, 80, seed)):
            ext = "png" if i % 2 else "jpg"
            Image.fromarray(img).resize((80 + 8 * i, 72)).save(folder / f"photo_{i}.{ext}")
    return root


@pytest.fixture
def make_cfg(data_dir: Path, tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose ``conf/<config_name>.yaml`` with overrides, writing into this test's tmp_path."""

    def _make(overrides: list[str], config_name: str = "train", output_dir: Path | None = None) -> DictConfig:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(
                config_name=config_name,
                overrides=[f"paths.data_dir={data_dir}", *overrides],
                return_hydra_config=True,
            )
        out = output_dir or tmp_path
        with open_dict(cfg):
            cfg.paths.output_dir = str(out)
            cfg.paths.log_dir = str(out)
            cfg.hydra.runtime.output_dir = str(out)
        HydraConfig().set_config(cfg)
        with open_dict(cfg):
            del cfg["hydra"]  # as in a real run: the task sees the config without the hydra node
        return cfg

    return _make


def train_overrides(experiment: str, *extra: str) -> list[str]:
    """Overrides for a quick CPU run of an experiment on the tiny data."""
    overrides = [f"experiment={experiment}", "trainer.accelerator=cpu", "logger=csv", *TINY_MODEL]
    if experiment.endswith("_gan"):  # pretraining has no discriminator (model/discriminator=none)
        overrides.append("model.discriminator.ndf=8")
    if experiment.startswith("photos"):
        overrides += ["data.image_size=64", "data.batch_size=2", "data.num_workers=0"]
    else:
        overrides += ["model.generator.ngf=8", "data.batch_size=8", "data.val_size=16", "data.eval_batch_size=16"]
    return overrides + list(extra)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Small networks run faster on one thread; on a busy machine idle OpenMP threads cost more."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
