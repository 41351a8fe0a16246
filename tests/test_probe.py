"""The CIFAR-10 probe: learns, saves atomically in a weights-only file, loads, fails clearly."""

from __future__ import annotations

import pytest
import torch

from colorgan.data.cifar10 import CLASS_NAMES
from colorgan.evaluate.probe import (
    ProbeError,
    ProbeNet,
    accuracy,
    gray_version,
    load_probe,
    main,
    predict,
    random_translate_flip,
    save_probe,
    train_from_config,
    train_probe,
)
from colorgan.runtime import DeviceUnavailable

TINY = (8, 16, 16)


def colour_coded(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose class is their dominant colour (red, green, blue): learnable only in colour."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    images = torch.randint(60, 120, (n, 3, 32, 32), generator=g)
    images[torch.arange(n), labels] += 100
    return images.to(torch.uint8), labels


def test_probe_accepts_uint8_and_float_images_alike():
    net = ProbeNet(TINY).eval()
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    torch.testing.assert_close(net(x), net(x.float() / 255))
    assert net.features(x).shape == (2, TINY[-1]) and net(x).shape == (2, 10)


def test_whitening_stem_decorrelates_patches():
    images, _ = colour_coded(64, 0)
    net = ProbeNet(TINY)
    net.init_whitening(images)
    with torch.no_grad():
        out = net.stem((images.float() - net.mean) / net.std) - net.stem.bias.view(1, -1, 1, 1)
    half = out[:, :12].permute(1, 0, 2, 3).flatten(1)
    cov = torch.cov(half)
    off_diagonal = cov - torch.diag(torch.diag(cov))
    assert off_diagonal.abs().max() < 0.05 and torch.diag(cov).max() <= 1.01
    assert not net.stem.weight.requires_grad


def test_augmentation_only_flips_and_translates():
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.int64).reshape(2, 3, 8, 8).to(torch.uint8)
    out = random_translate_flip(images, torch.Generator().manual_seed(0), shift=2)
    assert out.shape == images.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(images.float(), (2, 2, 2, 2), mode="reflect")
    for i in range(2):
        candidates = [
            view[:, dy : dy + 8, dx : dx + 8]
            for view in (padded[i], padded[i].flip(-1))
            for dy in range(5)
            for dx in range(5)
        ]
        assert any(torch.equal(out[i].float(), c) for c in candidates)


def test_probe_learns_colour_and_fails_on_gray():
    images, labels = colour_coded(96, 1)
    net = train_probe(images, labels, widths=TINY, epochs=6, batch_size=32, lr=0.05, label_smoothing=0.0)
    test_images, test_labels = colour_coded(48, 2)
    assert accuracy(net, test_images, test_labels) > 0.9
    assert accuracy(net, gray_version(test_images), test_labels) < 0.7  # the colour carried the label


def test_save_is_weights_only_and_round_trips(tmp_path):
    images, labels = colour_coded(32, 3)
    net = train_probe(images, labels, widths=TINY, max_steps=2, batch_size=16)
    path = save_probe(tmp_path / "sub" / "probe.pt", net, CLASS_NAMES, {"test_accuracy": 0.5})
    assert sorted(p.name for p in path.parent.iterdir()) == ["probe.pt"]  # no temporary file left behind
    raw = torch.load(path, weights_only=True)
    assert raw["class_names"] == list(CLASS_NAMES) and raw["config"]["widths"] == list(TINY)
    loaded, meta = load_probe(path)
    assert meta["info"] == {"test_accuracy": 0.5}
    torch.testing.assert_close(loaded(images), net(images))
    assert torch.equal(predict(loaded, images), predict(net, images))


def test_load_explains_what_is_wrong(tmp_path):
    with pytest.raises(ProbeError, match=r"python -m colorgan\.evaluate\.probe train"):
        load_probe(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ProbeError, match="could not be read safely"):
        load_probe(tmp_path / "junk.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ProbeError, match="not a colorgan probe"):
        load_probe(tmp_path / "other.pt")


def test_train_from_config_writes_the_probe_and_its_accuracy(make_cfg, tmp_path):
    out = tmp_path / "probe" / "p.pt"
    cfg = make_cfg(
        [f"probe.weights_path={out}", "probe.max_steps=2", "probe.batch_size=16", "probe.widths=[8,16,16]"],
        config_name="probe",
    )
    summary = train_from_config(cfg)
    assert summary["weights_path"] == str(out) and out.is_file()
    assert summary["train_images"] == 64 and summary["test_images"] == 24
    assert 0.0 <= summary["test_accuracy"] <= 1.0 and 0.0 <= summary["test_accuracy_gray"] <= 1.0
    _, meta = load_probe(out)
    assert meta["info"]["test_accuracy"] == summary["test_accuracy"]


def test_an_unwritable_destination_fails_before_training(make_cfg, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    cfg = make_cfg([f"probe.weights_path={blocker}/probe.pt"], config_name="probe")
    with pytest.raises(ProbeError, match=r"probe\.weights_path"):
        train_from_config(cfg)


def test_command_line_needs_the_train_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2 and "python -m colorgan.evaluate.probe train" in capsys.readouterr().err


def test_a_gpu_that_is_not_there_is_named_before_training(make_cfg, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = make_cfg([f"probe.weights_path={tmp_path / 'p.pt'}", "probe.device=cuda"], config_name="probe")
    with pytest.raises(DeviceUnavailable, match=r"probe\.device cuda: CUDA is not available"):
        train_from_config(cfg)
