"""One rendering and one definition per metric: what validation and evaluate.py score is what colorize writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Callback, Trainer
from PIL import Image

from colorgan.apps.colorize import main as colorize_main
from colorgan.apps.export import main as export_main
from colorgan.checkpoint import load_generator
from colorgan.data.cifar10_datamodule import CIFAR10DataModule
from colorgan.evaluate.evaluator import EvaluationModule, build_trainer
from colorgan.train.module import ColorizationModule

TINY_UNET = {"name": "unet", "image_size": 32, "ngf": 8, "dropout": 0.5, "dropout_blocks": 1}

pytestmark = pytest.mark.usefixtures("one_thread")


def saturated_checkpoint(path: Path, **hparams) -> Path:
    """A generator whose colours are strong and mostly out of gamut: where renderings differ most."""
    torch.manual_seed(0)
    module = ColorizationModule(generator=TINY_UNET, lambda_gan=0.0, **hparams)
    with torch.no_grad():
        module.generator.decoders[0][1].bias.copy_(torch.tensor([1.5, -1.2]))  # tanh(...) ~ +-0.85: |ab| ~ 95
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return saturated_checkpoint(tmp_path_factory.mktemp("ckpt") / "saturated.ckpt")


def evaluated(dm: CIFAR10DataModule, generators: dict[str, torch.nn.Module], **options) -> EvaluationModule:
    """trainer.test on the CPU, as evaluate.py runs it: gray and ``generators`` scored."""
    module = EvaluationModule(generators, per_class=False, **options)
    build_trainer("cpu").test(module, datamodule=dm, verbose=False)
    return module


def cifar(data_dir: Path) -> CIFAR10DataModule:
    dm = CIFAR10DataModule(data_dir=str(data_dir), val_size=16, eval_batch_size=64, download=False)
    dm.prepare_data()
    dm.setup("test")
    return dm


def test_evaluation_scores_the_pixels_colorize_writes(data_dir, ckpt, tmp_path):
    dm = cifar(data_dir)
    generator, _ = load_generator(ckpt)
    samples = evaluated(dm, {"model": generator}, num_samples=64).samples
    scored = (samples["model"] * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    truth = (samples["truth"] * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    src = tmp_path / "in"
    src.mkdir()
    for i, image in enumerate(truth):
        Image.fromarray(image).save(src / f"{i:03d}.png")
    assert colorize_main([str(src), "--ckpt", str(ckpt), "--out", str(tmp_path / "out"), "--device", "cpu"]) == 0
    written = np.stack([np.asarray(Image.open(tmp_path / "out" / f"{i:03d}.png")) for i in range(len(truth))])
    assert written.shape == scored.shape == (24, 32, 32, 3)
    # saturated predictions, where clipping and keeping the lightness differ by tens of levels
    assert np.array_equal(written, scored)


def test_validation_metrics_are_evaluations_metrics(data_dir, ckpt, tmp_path):
    """val/<name> during training and <name> in evaluate.py: the same numbers for the same images."""
    dm = cifar(data_dir)
    generator, hparams = load_generator(ckpt)
    module = ColorizationModule(**hparams)
    module.generator.load_state_dict(generator.state_dict())
    dm.val_dataloader = dm.test_dataloader  # validate on the test split that evaluation scores
    trainer = Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, default_root_dir=tmp_path)
    logged = trainer.validate(module, datamodule=dm, verbose=False)[0]
    results = evaluated(dm, {"model": generator}).results["models"]
    model, gray = results["model"], results["gray"]
    for name in ("psnr", "ssim", "l1_ab", "delta_e", "colorfulness", "delta_cf"):
        assert logged[f"val/{name}"] == pytest.approx(model[name], rel=1e-5, abs=1e-5), name
    assert logged["val/psnr_gain"] == pytest.approx(model["psnr"] - gray["psnr"], abs=1e-4)


def predictions_differ(generator: torch.nn.Module) -> bool:
    L = torch.rand(4, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        return not torch.equal(generator(L), generator(L))


@pytest.mark.parametrize("noise", [{}, {"noise_channels": 2, "dropout": 0.0}])
def test_inference_is_deterministic_unless_the_run_asks_for_stochastic(tmp_path, noise):
    cfg = {**TINY_UNET, **noise}
    for stochastic in (False, True):
        torch.manual_seed(0)
        module = ColorizationModule(generator=cfg, lambda_gan=0.0, stochastic_inference=stochastic)
        path = tmp_path / f"{stochastic}.ckpt"
        torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
        generator, _ = load_generator(path)
        assert predictions_differ(generator) == stochastic, f"stochastic_inference={stochastic}"
        assert not predictions_differ(load_generator(path, stochastic=False)[0])  # evaluate.py can override


class DropoutModes(Callback):
    def __init__(self) -> None:
        self.modes: set[bool] = set()

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self.modes |= {m.training for m in pl_module.generator.modules() if isinstance(m, torch.nn.Dropout)}


def test_validation_follows_stochastic_inference(data_dir, tmp_path):
    dm = cifar(data_dir)
    dm.val_dataloader = dm.test_dataloader
    for stochastic in (False, True):
        module = ColorizationModule(generator=TINY_UNET, lambda_gan=0.0, stochastic_inference=stochastic)
        modes = DropoutModes()
        trainer = Trainer(
            accelerator="cpu", logger=False, enable_checkpointing=False, callbacks=[modes], default_root_dir=tmp_path
        )
        trainer.validate(module, datamodule=dm, verbose=False)
        assert modes.modes == {stochastic}


def test_export_refuses_a_stochastic_generator_unless_told_to_fix_it(tmp_path, capsys):
    ckpt = saturated_checkpoint(tmp_path / "stochastic.ckpt", stochastic_inference=True)
    out = tmp_path / "model.pt"
    assert export_main(["--ckpt", str(ckpt), "--format", "torchscript", "--out", str(out)]) == 1
    assert "--deterministic" in capsys.readouterr().err and not out.exists()
    assert export_main(["--ckpt", str(ckpt), "--format", "torchscript", "--out", str(out), "--deterministic"]) == 0
    assert out.exists()  # and verified against the deterministic PyTorch generator


def test_diversity_says_whether_the_generator_uses_its_noise(data_dir, tmp_path):
    dm = cifar(data_dir)
    torch.manual_seed(0)
    noisy = ColorizationModule(generator={**TINY_UNET, "dropout": 0.0, "noise_channels": 2}, lambda_gan=0.0)
    quiet = ColorizationModule(generator={**TINY_UNET, "dropout": 0.0}, lambda_gan=0.0)
    noisy.generator.eval(), quiet.generator.eval()  # as load_generator hands them over
    generators = {"noisy": noisy.generator, "quiet": quiet.generator}
    results = evaluated(dm, generators, diversity=True).results["models"]
    assert results["gray"]["diversity_ab"] == 0 == results["quiet"]["diversity_ab"]  # nothing random in them
    assert results["noisy"]["diversity_ab"] > 0
    assert not noisy.generator.training  # measured in stochastic mode, then put back
