"""colorgan-export: ONNX and TorchScript files that match PyTorch at any batch, height and width."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from torch import nn

from colorgan.apps.export import ExportError, build_parser, export_generator, main, verify
from colorgan.checkpoint import load_generator
from colorgan.models import build_generator
from colorgan.train.module import ColorizationModule
from tests.places import unwritable_folder

GENERATORS = {
    "unet": {"name": "unet", "image_size": 32, "ngf": 8},  # 5 levels: pads to a multiple of 32, dropout 0.5
    "resnet18_unet": {"name": "resnet18_unet", "image_size": 32},
}
SIZES = [(2, 1, 45, 70), (3, 1, 32, 64), (1, 1, 1, 1)]

pytestmark = pytest.mark.usefixtures("one_thread")


def save_checkpoint(generator_cfg: dict, path: Path) -> Path:
    """A checkpoint laid out as train.py writes it, with non-trivial batch-norm statistics.

    Running means and variances away from 0 and 1 make an export that used batch statistics
    (training mode) give visibly different numbers.
    """
    torch.manual_seed(0)
    module = ColorizationModule(generator=generator_cfg, lambda_gan=0.0)
    for m in module.generator.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    return path


def run_file(path: Path, fmt: str, L: torch.Tensor) -> np.ndarray:
    if fmt == "onnx":
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(["ab"], {"L": L.numpy()})[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.jit.load(str(path))
    with torch.inference_mode():
        return module(L).numpy()


@pytest.fixture(scope="module", params=[(g, f) for g in GENERATORS for f in ("onnx", "torchscript")], ids="-".join)
def exported(request, tmp_path_factory) -> tuple[str, str, Path, Path]:
    name, fmt = request.param
    folder = tmp_path_factory.mktemp(f"export_{name}_{fmt}")
    ckpt = save_checkpoint(GENERATORS[name], folder / "model.ckpt")
    out = folder / "deploy" / ("model.onnx" if fmt == "onnx" else "model.pt")
    assert main(["--ckpt", str(ckpt), "--format", fmt, "--out", str(out)]) == 0
    return name, fmt, ckpt, out


@pytest.mark.slow
def test_exported_model_matches_pytorch_at_any_size(exported):
    name, fmt, ckpt, out = exported
    generator, _ = load_generator(ckpt)
    rng = torch.Generator().manual_seed(1)
    for shape in SIZES:
        L = torch.rand(shape, generator=rng) * 2 - 1
        with torch.inference_mode():
            expected = generator(L).numpy()
        got = run_file(out, fmt, L)
        assert got.shape == (shape[0], 2, *shape[2:])
        assert np.abs(got - expected).max() <= 1e-4, (name, fmt, shape)


@pytest.mark.slow
def test_exported_model_is_in_inference_mode(exported):
    """Each image's output is independent of its batch and repeatable: no dropout, no batch statistics."""
    _, fmt, _, out = exported
    L = torch.rand((3, 1, 45, 70), generator=torch.Generator().manual_seed(2)) * 2 - 1
    batch = run_file(out, fmt, L)
    assert np.abs(batch - run_file(out, fmt, L)).max() == 0
    for i in range(3):
        assert np.abs(batch[i : i + 1] - run_file(out, fmt, L[i : i + 1])).max() <= 1e-5


@pytest.mark.slow
def test_exported_file_says_what_goes_in_and_out(exported):
    name, fmt, _, out = exported
    if fmt == "onnx":
        model = onnx.load(str(out))
        (inp,), (outp,) = model.graph.input, model.graph.output
        assert (inp.name, outp.name) == ("L", "ab")
        dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
        assert dims[1] == 1 and all(isinstance(d, str) and d for d in (dims[0], dims[2], dims[3]))
        meta = {p.key: p.value for p in model.metadata_props}
    else:
        extra = {"colorgan.json": ""}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.jit.load(str(out), _extra_files=extra)
        meta = json.loads(extra["colorgan.json"])
    assert meta["colorgan.image_size"] == "32"
    assert json.loads(meta["colorgan.generator"])["name"] == name
    assert "(B, 1, H, W)" in meta["colorgan.input"] and "(B, 2, H, W)" in meta["colorgan.output"]


def test_a_generator_in_training_mode_is_exported_for_inference(tmp_path):
    torch.manual_seed(0)
    generator = build_generator(GENERATORS["unet"]).train()
    out = export_generator(generator, tmp_path / "g.pt", "torchscript")
    assert not generator.training
    L = torch.rand((2, 1, 33, 47)) * 2 - 1
    with torch.inference_mode():
        expected = generator(L).numpy()
    assert np.abs(run_file(out, "torchscript", L) - expected).max() <= 1e-4


def test_verification_catches_a_model_that_does_not_match(tmp_path):
    torch.manual_seed(0)
    first = build_generator(GENERATORS["unet"])
    second = build_generator(GENERATORS["unet"])
    out = export_generator(first, tmp_path / "first.pt", "torchscript")
    with pytest.raises(ExportError, match="differs"):
        verify(second.eval(), out, "torchscript", 32)


def test_failures_leave_no_file_and_exit_1(tmp_path, capsys):
    out = tmp_path / "model.onnx"
    assert main(["--ckpt", str(tmp_path / "missing.ckpt"), "--out", str(out)]) == 1
    assert "missing.ckpt" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(SystemExit):
        main(["--ckpt", "x.ckpt", "--format", "tflite", "--out", str(out)])


def test_help_documents_the_tensors():
    text = build_parser().format_help()
    assert "(B, 1, H, W)" in text and "(B, 2, H, W)" in text and "L*/50 - 1" in text and "/110" in text


def test_compact_export_is_a_half_size_checkpoint_that_colorize_and_evaluate_read(tmp_path):
    ckpt = save_checkpoint({"name": "unet", "image_size": 32, "ngf": 8}, tmp_path / "full.ckpt")
    out = tmp_path / "compact.ckpt"
    assert main(["--ckpt", str(ckpt), "--format", "compact", "--out", str(out)]) == 0
    full, _ = load_generator(ckpt)
    compact, hparams = load_generator(out)
    assert hparams["generator"]["ngf"] == 8 and not hparams["stochastic_inference"]
    weights = torch.load(out, map_location="cpu", weights_only=True)["state_dict"]
    assert {v.dtype for v in weights.values() if v.is_floating_point()} == {torch.float16}
    L = torch.rand(2, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        assert (compact(L) - full(L)).abs().max() < 1.5e-2  # fp16 weights: within about one Lab unit
    assert out.stat().st_size < 0.6 * sum(v.numel() * 4 for v in weights.values())


def test_out_is_checked_before_the_export_work(tmp_path, capsys, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the checkpoint was loaded before --out was checked")

    monkeypatch.setattr("colorgan.apps.export.load_generator", refuse)
    folder = tmp_path / "deploy"
    folder.mkdir()
    assert main(["--ckpt", str(tmp_path / "model.ckpt"), "--out", str(folder)]) == 1
    err = capsys.readouterr().err
    assert f"{folder} is a folder" in err and str(folder / "model.onnx") in err, err
    locked = unwritable_folder(tmp_path)
    for out in (locked / "model.onnx", locked / "new" / "model.onnx"):
        assert main(["--ckpt", str(tmp_path / "model.ckpt"), "--out", str(out)]) == 1
        err = capsys.readouterr().err
        assert str(out) in err and "cannot write" in err, err


def test_out_never_replaces_the_checkpoint_a_runs_checkpoints_or_a_models_files(tmp_path, capsys, monkeypatch):
    checkpoints = tmp_path / "run" / "checkpoints"
    checkpoints.mkdir(parents=True)
    ckpt = save_checkpoint(GENERATORS["unet"], checkpoints / "last.ckpt")
    earlier = checkpoints / "epoch_000.ckpt"
    earlier.write_bytes(ckpt.read_bytes())
    model = tmp_path / "model"
    assert main(["--ckpt", str(ckpt), "--format", "folder", "--out", str(model)]) == 0
    kept = {p: p.read_bytes() for p in [*checkpoints.iterdir(), *model.iterdir()]}

    def refuse(*args, **kwargs):
        raise AssertionError("the checkpoint was read before --out was checked")

    monkeypatch.setattr("colorgan.apps.export.load_generator", refuse)
    monkeypatch.setattr("colorgan.apps.export.read_generator_source", refuse)
    cases = [
        (ckpt, "compact", ckpt, "is the --ckpt"),
        (ckpt, "compact", earlier, "existing checkpoint"),
        (ckpt, "compact", checkpoints / "small.ckpt", "checkpoints folder"),
        (ckpt, "onnx", checkpoints / "model.onnx", "checkpoints folder"),
        (ckpt, "compact", tmp_path / "link.ckpt", "is the --ckpt"),  # a symlink to it
        (ckpt, "torchscript", model / "model.safetensors", "is a file of the model folder"),
        (model, "folder", model, "is the --ckpt"),
    ]
    (tmp_path / "link.ckpt").symlink_to(ckpt)
    for source, fmt, out, words in cases:
        assert main(["--ckpt", str(source), "--format", fmt, "--out", str(out)]) == 1, out
        err = capsys.readouterr().err
        assert str(out) in err and words in err and "choose another --out" in err, err
    assert {p: p.read_bytes() for p in kept} == kept
    assert sorted(p.name for p in checkpoints.iterdir()) == ["epoch_000.ckpt", "last.ckpt"]
