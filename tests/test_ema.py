"""The generator's weight average: its arithmetic, where it is used, and that checkpoints keep it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from colorgan.checkpoint import load_checkpoint, load_generator
from colorgan.train.build import build
from colorgan.train.ema import GeneratorEMA
from tests.conftest import train_overrides


def test_the_average_moves_towards_the_weights_and_copies_integer_buffers():
    net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))
    ema = GeneratorEMA(net, decay=0.9)
    start = {k: v.clone() for k, v in ema.module.state_dict().items()}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    net.train()(torch.randn(4, 1, 3, 3))  # moves running stats and num_batches_tracked
    ema.update(net)
    first = min(0.9, 1 / 10)  # warm-up: the first update takes 90% of the new weights
    for key, now in net.state_dict().items():
        got = ema.module.state_dict()[key]
        if now.is_floating_point():
            assert torch.allclose(got, start[key] + (1 - first) * (now - start[key]))
        else:
            assert torch.equal(got, now)
    assert int(ema.updates) == 1
    for _ in range(200):
        ema.update(net)
    assert torch.allclose(ema.module[0].weight, net[0].weight, atol=1e-4)  # a fixed point is reached


def test_decay_outside_0_1_is_refused_with_the_key():
    with pytest.raises(ValueError, match=r"model\.ema_decay"):
        GeneratorEMA(nn.Linear(1, 1), decay=1.0)


def test_training_keeps_an_average_of_g_only_used_by_validation_and_loaders(make_cfg, tmp_path):
    common = ("trainer.max_epochs=1", "trainer.limit_train_batches=3", "trainer.limit_val_batches=1")
    cfg = make_cfg(train_overrides("cifar_gan", "model.ema_decay=0.5", *common), output_dir=tmp_path / "run")
    datamodule, model, trainer = build(cfg)
    seen = []
    original = model.generator_ema.module.forward
    model.generator_ema.module.forward = lambda *a, **k: seen.append(1) or original(*a, **k)
    trainer.fit(model, datamodule=datamodule)
    assert seen, "validation must colorize with the average"
    assert int(model.generator_ema.updates) == 3  # one update per G step
    numel = lambda net: sum(p.numel() for p in net.parameters())
    averaged_numel, g_numel, d_numel = (
        numel(model.generator_ema.module),
        numel(model.generator),
        numel(model.discriminator),
    )
    assert d_numel > 0 and averaged_numel == g_numel  # G's weights, all of them, and none of D's

    path = tmp_path / "run" / "checkpoints" / "last.ckpt"
    state = load_checkpoint(path)["state_dict"]
    ema_keys = {k.removeprefix("generator_ema.module.") for k in state if k.startswith("generator_ema.module.")}
    assert ema_keys == set(model.generator.state_dict())
    averaged, _ = load_generator(path)
    trained, _ = load_generator(path, ema=False)
    for key, value in averaged.state_dict().items():
        assert torch.equal(value, state[f"generator_ema.module.{key}"])
        assert torch.equal(trained.state_dict()[key], state[f"generator.{key}"])
    assert any(not torch.equal(averaged.state_dict()[k], trained.state_dict()[k]) for k in averaged.state_dict())

    # a resume restores the average and its count, then keeps updating it
    cfg = make_cfg(
        train_overrides("cifar_gan", "model.ema_decay=0.5", "trainer.max_epochs=2", *common[1:]),
        output_dir=tmp_path / "run",
    )
    datamodule, model, trainer = build(cfg)
    trainer.fit(model, datamodule=datamodule, ckpt_path=str(path))
    assert int(model.generator_ema.updates) == 6
