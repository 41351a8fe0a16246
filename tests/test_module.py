"""The manual D/G loop: each step moves only its own network; pretraining has no D."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch
from lightning.pytorch import Callback

from colorgan.losses import GANLoss
from colorgan.module import ColorizationModule, LinearDecay
from colorgan.training import build
from tests.conftest import train_overrides


def params(module: torch.nn.Module | None) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()} if module is not None else {}


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> bool:
    return any(not torch.equal(before[k], after[k]) for k in before)


class StepRecorder(Callback):
    """Snapshots G and D right before each optimizer step and at the end of the batch."""

    def __init__(self) -> None:
        self.snapshots: list[tuple[str, dict, dict]] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        name = "d" if optimizer is trainer.optimizers[-1] and len(trainer.optimizers) == 2 else "g"
        self.snapshots.append((name, params(pl_module.generator), params(pl_module.discriminator)))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.snapshots.append(("end", params(pl_module.generator), params(pl_module.discriminator)))


def fit_batches(make_cfg, experiment: str, watcher: Callback, batches: int = 1) -> ColorizationModule:
    """One epoch of ``batches`` training batches on the tiny data, no validation, ``watcher`` attached."""
    cfg = make_cfg(
        train_overrides(
            experiment,
            "trainer.max_epochs=1",
            f"trainer.limit_train_batches={batches}",
            "trainer.limit_val_batches=0",
            "callbacks=none",
        )
    )
    datamodule, model, trainer = build(cfg)
    trainer.callbacks.append(watcher)
    trainer.fit(model, datamodule=datamodule)
    return model


def fit_one_batch(make_cfg, experiment: str) -> tuple[ColorizationModule, StepRecorder]:
    recorder = StepRecorder()
    return fit_batches(make_cfg, experiment, recorder), recorder


def test_d_step_moves_only_d_and_g_step_only_g(make_cfg):
    _, rec = fit_one_batch(make_cfg, "cifar_gan")
    assert [s[0] for s in rec.snapshots] == ["d", "g", "end"]
    (_, g0, d0), (_, g1, d1), (_, g2, d2) = rec.snapshots
    assert changed(d0, d1) and not changed(g0, g1), "the D step must update D and leave G alone"
    assert changed(g1, g2) and not changed(d1, d2), "the G step must update G and leave D alone"


def test_pretraining_builds_and_steps_no_discriminator(make_cfg):
    model, rec = fit_one_batch(make_cfg, "cifar_pretrain")
    assert model.discriminator is None
    assert not any("discriminator" in name for name in model.state_dict())
    assert [s[0] for s in rec.snapshots] == ["g", "end"]
    assert changed(rec.snapshots[0][1], rec.snapshots[1][1])


def test_gan_losses_point_the_right_way():
    for mode in ("vanilla", "lsgan", "hinge"):
        loss = GANLoss(mode)
        confident = loss.discriminator(torch.full((4, 1, 3, 3), 5.0), torch.full((4, 1, 3, 3), -5.0))[0]
        fooled = loss.discriminator(torch.full((4, 1, 3, 3), -5.0), torch.full((4, 1, 3, 3), 5.0))[0]
        assert confident < fooled, mode
        assert loss.generator(torch.full((2, 1, 3, 3), 5.0)) < loss.generator(torch.full((2, 1, 3, 3), -5.0)), mode


def test_linear_decay_matches_pix2pix():
    rule = LinearDecay(decay_start=5, total=10)
    factors = [rule(e) for e in range(10)]
    assert factors[:6] == [1.0] * 6
    assert all(a > b for a, b in pairwise(factors[5:]))
    assert factors[-1] == pytest.approx(0.2)
    assert LinearDecay(decay_start=0, total=0)(7) == 1.0  # open-ended runs keep the full rate


class LearningRates(Callback):
    def __init__(self) -> None:
        self.seen: list[tuple[float, ...]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen.append(tuple(opt.param_groups[0]["lr"] for opt in trainer.optimizers))


@pytest.mark.parametrize("experiment", ["cifar_pretrain", "cifar_gan"])
def test_one_epoch_run_decays_lr_per_batch_over_its_second_half(make_cfg, experiment):
    rates = LearningRates()
    model = fit_batches(make_cfg, experiment, rates, batches=4)
    base = model.hparams.lr
    expected = [base, base, base, base / 2]  # decay from batch 2 of 4: 1, 1, 1, 1/2
    for per_optimizer in zip(*rates.seen):
        assert per_optimizer == pytest.approx(expected)
