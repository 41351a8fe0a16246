"""Which checkpoint is 'best': L1 for pretraining, realism with a PSNR guard for the GAN stage."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback

from colorgan.data.cifar10 import CLASS_NAMES as CIFAR10_CLASSES
from colorgan.data.cifar10 import load_cifar10_split
from colorgan.evaluate.probe import ProbeError, save_probe, train_probe
from colorgan.train.build import build
from colorgan.train.callbacks import GuardedModelCheckpoint
from tests.conftest import train_overrides

pytestmark = pytest.mark.usefixtures("one_thread")


class ValidationMetrics(Callback):
    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.epochs.append({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")})


@pytest.fixture(scope="module")
def probe_file(data_dir, tmp_path_factory) -> Path:
    images, labels = load_cifar10_split(data_dir, "train")
    net = train_probe(images, labels, widths=(8, 16, 16), max_steps=2, batch_size=16)
    return save_probe(tmp_path_factory.mktemp("probe") / "probe.pt", net, CIFAR10_CLASSES, {"test_accuracy": 0.1})


def fit_gan(make_cfg, tmp_path, *overrides: str):
    cfg = make_cfg(
        train_overrides("cifar_gan", "trainer.max_epochs=3", "trainer.num_sanity_val_steps=0", *overrides),
        output_dir=tmp_path,
    )
    datamodule, model, trainer = build(cfg)
    metrics = ValidationMetrics()
    trainer.callbacks.append(metrics)
    trainer.fit(model, datamodule=datamodule)
    return trainer, metrics.epochs


def test_the_gan_stage_ranks_by_realism_not_l1(make_cfg, tmp_path):
    cfg = make_cfg(train_overrides("cifar_gan"))
    assert cfg.callbacks.model_checkpoint.monitor == "val/realism" == cfg.optimized_metric
    assert cfg.callbacks.model_checkpoint.guard == "val/psnr_gain"
    assert make_cfg(train_overrides("cifar_pretrain")).callbacks.model_checkpoint.monitor == "val/l1_ab"


@pytest.mark.parametrize("guard_min", [-1000.0, 1000.0])
def test_the_best_gan_checkpoint_is_the_most_real_among_those_passing_the_psnr_guard(make_cfg, tmp_path, guard_min):
    trainer, epochs = fit_gan(make_cfg, tmp_path, f"callbacks.model_checkpoint.guard_min={guard_min}")
    checkpoint = trainer.checkpoint_callback
    assert isinstance(checkpoint, GuardedModelCheckpoint) and len(epochs) == 3
    assert all(e["val/realism"] == e["val/delta_cf"] for e in epochs)  # no probe here: the colourfulness gap
    if guard_min < 0:  # every epoch passes: the best is the lowest realism score
        best = min(range(3), key=lambda i: epochs[i]["val/realism"])
        assert float(checkpoint.best_model_score) == pytest.approx(epochs[best]["val/realism"])
        assert checkpoint.best_model_path.endswith(f"epoch_{best:03d}.ckpt")
    else:  # no epoch is as good as gray + 1000 dB: none may be called best
        assert checkpoint.best_model_path == "" and checkpoint.guard_rejections == 3


def test_fid_probe_is_the_realism_score_when_the_probe_is_there(make_cfg, tmp_path, probe_file):
    _, epochs = fit_gan(make_cfg, tmp_path, f"model.realism_probe={probe_file}", "trainer.max_epochs=1")
    assert epochs[0]["val/realism"] == epochs[0]["val/fid_probe"] > 0


def test_asking_for_fid_probe_without_the_probe_names_the_key(make_cfg, tmp_path):
    with pytest.raises(ProbeError, match=r"model.realism_probe=.*python -m colorgan.evaluate.probe train"):
        fit_gan(make_cfg, tmp_path, "model.realism_metric=fid_probe", f"model.realism_probe={tmp_path}/none.pt")


def test_the_probe_stays_out_of_checkpoints(make_cfg, tmp_path, probe_file):
    fit_gan(make_cfg, tmp_path, f"model.realism_probe={probe_file}", "trainer.max_epochs=1")
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert not any("probe" in key for key in ckpt["state_dict"])
