"""The manual D/G loop: each step moves only its own network; pretraining has no D."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch
from lightning.pytorch import Callback

from colorgan.evaluate.metrics import ciede2000
from colorgan.train.build import build
from colorgan.train.losses import GANLoss
from colorgan.train.module import ColorizationModule, LinearDecay
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


def flat(rates: list[tuple[float, ...]]) -> list[float]:
    return [lr for per_batch in rates for lr in per_batch]


def test_resuming_into_a_longer_run_follows_the_new_schedule(make_cfg, tmp_path):
    """1 epoch, then resumed with max_epochs=2: the resumed epoch's rates are an uninterrupted 2-epoch run's."""
    common = ["trainer.num_sanity_val_steps=0", "trainer.limit_val_batches=0", "trainer.limit_train_batches=4"]

    def fit(epochs: int, out: str, ckpt: str | None = None) -> LearningRates:
        cfg = make_cfg(train_overrides("cifar_gan", f"trainer.max_epochs={epochs}", *common), output_dir=tmp_path / out)
        datamodule, model, trainer = build(cfg)
        rates = LearningRates()
        trainer.callbacks.append(rates)
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt)
        return rates

    whole = fit(2, "whole").seen
    fit(1, "short")
    resumed = fit(2, "short", ckpt=str(tmp_path / "short" / "checkpoints" / "last.ckpt")).seen
    assert len(whole) == 8 and len(resumed) == 4
    assert flat(resumed) == pytest.approx(flat(whole[4:]))
    assert min(flat(resumed)) > 0, "the resumed epoch must keep learning"


class SaveAfterFirstEpoch(Callback):
    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch == 0:
            trainer.save_checkpoint(self.path)


def test_resuming_with_the_same_settings_continues_the_same_schedule(make_cfg, tmp_path):
    common = ["trainer.num_sanity_val_steps=0", "trainer.limit_val_batches=0", "trainer.limit_train_batches=4"]
    epoch_0 = str(tmp_path / "epoch0.ckpt")
    rates = []
    for out, ckpt in (("a", None), ("b", epoch_0)):
        cfg = make_cfg(train_overrides("cifar_pretrain", "trainer.max_epochs=2", *common), output_dir=tmp_path / out)
        datamodule, model, trainer = build(cfg)
        rates.append(LearningRates())
        trainer.callbacks += [rates[-1], SaveAfterFirstEpoch(epoch_0)] if ckpt is None else [rates[-1]]
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt)
    whole, resumed = rates
    assert len(resumed.seen) == 4
    assert flat(resumed.seen) == pytest.approx(flat(whole.seen[4:]))


def state(module: torch.nn.Module | None) -> dict[str, torch.Tensor]:
    """Parameters and buffers (BatchNorm statistics included)."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()} if module is not None else {}


class StateRecorder(Callback):
    """G's and D's parameters and buffers at the batch's start and end, and before and after each step."""

    def __init__(self) -> None:
        self.snapshots: list[tuple[str, dict, dict]] = []

    def on_train_start(self, trainer, pl_module) -> None:
        for optimizer in trainer.optimizers:
            optimizer.register_step_post_hook(lambda opt, *_: self._after_step(trainer, pl_module, opt))

    def _after_step(self, trainer, pl_module, optimizer) -> None:
        name = "d" if optimizer is trainer.optimizers[-1] and len(trainer.optimizers) == 2 else "g"
        self.snapshots.append((f"{name} done", state(pl_module.generator), state(pl_module.discriminator)))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.snapshots.append(("start", state(pl_module.generator), state(pl_module.discriminator)))

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        name = "d" if optimizer is trainer.optimizers[-1] and len(trainer.optimizers) == 2 else "g"
        self.snapshots.append((name, state(pl_module.generator), state(pl_module.discriminator)))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.snapshots.append(("end", state(pl_module.generator), state(pl_module.discriminator)))


def fit_gan_batch(make_cfg, *overrides: str, patch=None) -> StateRecorder:
    cfg = make_cfg(
        train_overrides(
            "cifar_gan",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=1",
            "trainer.limit_val_batches=0",
            "callbacks=none",
            *overrides,
        )
    )
    datamodule, model, trainer = build(cfg)
    if patch is not None:
        patch(model)
    recorder = StateRecorder()
    trainer.callbacks.append(recorder)
    trainer.fit(model, datamodule=datamodule)
    return recorder


def test_the_adversarial_term_alone_moves_g_and_the_g_step_leaves_d_alone(make_cfg):
    rec = fit_gan_batch(make_cfg, "model.lambda_l1=0")
    assert [s[0] for s in rec.snapshots] == ["start", "d", "d done", "g", "g done", "end"]
    states = {name: (g, d) for name, g, d in rec.snapshots}
    assert changed(states["g"][0], states["end"][0]), "with lambda_l1=0 only the GAN term moves G: it must reach G"
    # from the end of D's step to the end of the batch (G's forward through D, backward and step)
    assert not changed(states["d done"][1], states["end"][1]), "the G step must not change D's weights or statistics"
    assert not changed(states["d"][0], states["d done"][0]), "the D step must not change G"


def poison(which: str):
    """Make one network's loss non-finite for the batch, as a numerical blow-up would."""

    def patch(model) -> None:
        original = getattr(model.gan_loss, which)

        def nan_loss(*args):
            out = original(*args)
            return (out[0] * float("nan"), *out[1:]) if isinstance(out, tuple) else out * float("nan")

        setattr(model.gan_loss, which, nan_loss)

    return patch


@pytest.mark.parametrize(("skipped", "taken"), [("discriminator", "generator"), ("generator", "discriminator")])
def test_a_skipped_step_undoes_only_its_own_networks_statistics(make_cfg, skipped, taken):
    rec = fit_gan_batch(make_cfg, "model.lambda_l1=0", patch=poison(skipped))
    step = taken[0]  # "d" or "g": the only optimizer step of the batch
    assert [s[0] for s in rec.snapshots] == ["start", step, f"{step} done", "end"]
    (_, g0, d0), *_, (_, g1, d1) = rec.snapshots
    before = {"generator": (g0, g1), "discriminator": (d0, d1)}
    skipped_before, skipped_after = before[skipped]
    taken_before, taken_after = before[taken]
    assert not changed(skipped_before, skipped_after), f"{skipped} skipped its step: it is as before the batch"
    stats = [k for k in taken_before if "running" in k]
    assert changed({k: taken_before[k] for k in stats}, {k: taken_after[k] for k in stats}), (
        f"{taken}'s step was taken: keep its statistics"
    )
    assert changed(taken_before, taken_after)


def test_the_l2_reconstruction_term_is_the_squared_error(make_cfg):
    """With lambda_gan=0 the G loss is lambda * MSE(G(L), ab) for recon_loss=l2 (and lambda * L1 for l1)."""
    losses = {}
    for recon in ("l1", "l2", "ciede2000"):
        cfg = make_cfg(train_overrides("cifar_pretrain", f"model.recon_loss={recon}", "model.lambda_l1=10"))
        _, model, _ = build(cfg)
        L, ab = torch.rand(2, 1, 32, 32) * 2 - 1, (torch.rand(2, 2, 32, 32) - 0.5) * 0.4
        fake = model.generator(L).float()
        losses[recon] = (10 * model.recon_loss(fake, ab, L)).item(), 10 * (fake - ab).abs().mean().item()
    assert losses["l1"][0] == pytest.approx(losses["l1"][1])
    assert losses["l2"][0] < losses["l1"][0]  # |x| < 0.5 everywhere: x^2 < |x|
    true_lab, fake_lab = (torch.cat([(L + 1) * 50, x * 110], dim=1) for x in (ab, fake))
    assert losses["ciede2000"][0] == pytest.approx(10 * ciede2000(true_lab, fake_lab).mean().item() / 110, rel=1e-4)
    with pytest.raises(ValueError, match=r"model\.recon_loss"):
        ColorizationModule(generator={"name": "unet", "image_size": 32, "ngf": 8}, recon_loss="huber")


def test_weight_decay_shrinks_the_generators_weights_and_leaves_the_discriminators(monkeypatch):
    """model.weight_decay: decoupled decay (AdamW) on G alone; a step with zero gradients scales G by 1 - lr * wd."""
    model = ColorizationModule(
        generator={"name": "unet", "image_size": 32, "ngf": 8},
        discriminator={"name": "patchgan", "ndf": 8},
        lr=0.1,
        weight_decay=0.5,
    )
    monkeypatch.setattr(model, "_planned_batches", lambda n: (10, 5))
    (opt_g, opt_d), _ = model.configure_optimizers()
    before_g = {k: v.clone() for k, v in model.generator.named_parameters()}
    before_d = {k: v.clone() for k, v in model.discriminator.named_parameters()}
    for net in (model.generator, model.discriminator):
        for p in net.parameters():
            p.grad = torch.zeros_like(p)
    opt_g.step()
    opt_d.step()
    for name, p in model.generator.named_parameters():
        assert torch.allclose(p, before_g[name] * (1 - 0.1 * 0.5)), name
    for name, p in model.discriminator.named_parameters():
        assert torch.equal(p, before_d[name]), name
    with pytest.raises(ValueError, match=r"model\.weight_decay"):
        ColorizationModule(generator={"name": "unet", "image_size": 32, "ngf": 8}, weight_decay=-0.1)
