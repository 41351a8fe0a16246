"""Export a trained generator for deployment without colorgan: ONNX, TorchScript, fp16 checkpoint, model folder.

The exported model maps normalised lightness to normalised chroma (see :data:`EPILOG`). The
networks pad any H, W to a multiple of ``2**depth`` and crop the output back, and that padding is
part of the exported graph. Every export is checked before it is kept: the written file is run at
two sizes, one of them not a multiple of the padding, and must match PyTorch.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from colorgan.apps.cli import add_model_arguments, working_size
from colorgan.checkpoint import has_weight_average, load_generator, read_generator_source
from colorgan.errors import ColorganError, fail
from colorgan.files import read_json_object, replacing
from colorgan.model_folder import ModelFolderError, check_replaceable, save_model_folder, stored
from colorgan.models import set_temperature
from colorgan.output_checks import check_not_an_input, check_output_file, check_output_folder

FORMATS = ("onnx", "torchscript", "compact", "folder")
EXAMPLE_NAMES = {"onnx": "model.onnx", "torchscript": "model.pt", "compact": "model.ckpt", "folder": "my-colorizer"}
INPUT_NAME, OUTPUT_NAME = "L", "ab"
TOLERANCE = 1e-4
# compact stores fp16 weights: the ab it predicts differs from fp32's by up to about one Lab unit
TOLERANCES = {"onnx": TOLERANCE, "torchscript": TOLERANCE, "compact": 1.5e-2}
OPSET = 18
# Odd sides are never a multiple of 2**depth, so tracing takes the padding path that every
# other size needs too (a multiple would record a graph without it).
EXAMPLE_SHAPE = (2, 1, 37, 53)
MAX_METRICS_BYTES = 1 << 24  # evaluate.py's metrics.json is some KB

PROG = "colorgan-export"


class ExportError(ColorganError, RuntimeError):
    """The export failed, or the exported model does not reproduce the generator."""


def describe(hparams: dict[str, Any], ckpt: str | Path) -> dict[str, str]:
    """Metadata stored with the exported model: what goes in, what comes out, how it was trained."""
    generator = hparams.get("generator") or {}
    return {
        "colorgan.input": f"{INPUT_NAME}: float32 (B, 1, H, W), L*/50 - 1 in [-1, 1] (CIE Lab, D65)",
        "colorgan.output": f"{OUTPUT_NAME}: float32 (B, 2, H, W), (a*, b*)/110 in [-1, 1]",
        "colorgan.image_size": str(generator.get("image_size", "")),
        "colorgan.generator": json.dumps(generator, sort_keys=True),
        "colorgan.checkpoint": Path(ckpt).name,
    }


def _export_onnx(generator: nn.Module, example: torch.Tensor, out: Path, metadata: dict[str, str]) -> None:
    import onnx

    batch, height, width = (torch.export.Dim(n) for n in ("batch", "height", "width"))

    # the exporter reports its progress on stdout; a command's stdout stays for its own output
    with contextlib.redirect_stdout(io.StringIO()):
        program = torch.onnx.export(
            generator,
            (example,),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes={INPUT_NAME: {0: batch, 2: height, 3: width}},
            opset_version=OPSET,
            dynamo=True,
            verbose=False,
        )
    model = program.model_proto
    onnx.helper.set_model_props(model, metadata)
    onnx.save_model(model, out)  # one self-contained file (generators are far below 2 GB)


def _export_torchscript(generator: nn.Module, example: torch.Tensor, out: Path, metadata: dict[str, str]) -> None:
    traced = torch.jit.trace(generator, (example,), check_trace=False)
    torch.jit.save(traced, str(out), _extra_files={"colorgan.json": json.dumps(metadata)})


def _export_compact(generator: nn.Module, example: torch.Tensor, out: Path, metadata: dict[str, str]) -> None:
    """A colorgan checkpoint of the generator alone, weights in fp16: half the size, no optimizer states.

    ``evaluate.py``, ``colorgan-colorize`` and ``model.init_from`` read it like any checkpoint.
    """
    state = {
        f"generator.{k}": v.detach().half() if v.is_floating_point() else v for k, v in generator.state_dict().items()
    }
    hparams = {"generator": json.loads(metadata.get("colorgan.generator", "{}")), "stochastic_inference": False}
    torch.save({"state_dict": state, "hyper_parameters": hparams, "colorgan": metadata}, out)


def _run_exported(path: Path, fmt: str, L: torch.Tensor) -> np.ndarray:
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run([OUTPUT_NAME], {INPUT_NAME: L.numpy()})[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_generator(path, "cpu")[0] if fmt == "compact" else torch.jit.load(str(path), map_location="cpu")
    with torch.inference_mode():
        return model(L).numpy()


def verify(generator: nn.Module, path: Path, fmt: str, image_size: int) -> float:
    """Largest |exported - PyTorch| over two sizes (45 x 70 and the training size); raises past 1e-4."""
    worst = 0.0
    generator = generator.cpu()
    for shape in ((2, 1, 45, 70), (1, 1, image_size, image_size)):
        L = torch.rand(shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
        with torch.inference_mode():
            expected = generator(L).numpy()
        try:
            got = _run_exported(path, fmt, L)
        except Exception as err:  # onnxruntime and TorchScript each raise their own error types
            raise ExportError(f"the exported model fails on an input of shape {tuple(shape)}: {err}") from err
        if got.shape != expected.shape:
            raise ExportError(
                f"exported model: output shape {got.shape} for input {tuple(shape)}, expected {expected.shape}"
            )
        worst = max(worst, float(np.abs(got - expected).max()))
    if worst > TOLERANCES[fmt]:
        raise ExportError(
            f"the exported model differs from the PyTorch generator by {worst:.2e} (more than {TOLERANCES[fmt]})"
        )
    return worst


def export_generator(
    generator: nn.Module,
    out: str | Path,
    fmt: str = "onnx",
    metadata: dict[str, str] | None = None,
    verify_size: int | None = 32,
) -> Path:
    """Write ``generator`` (eval mode, on the CPU) as ``fmt`` to ``out``; verify unless ``verify_size=None``."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    out = Path(out)
    generator = generator.cpu().eval()
    # eval mode makes the network deterministic (dropout off, noise inputs z = 0), so the exported
    # file can be checked against PyTorch; stochastic generators are refused in main()
    example = torch.rand(EXAMPLE_SHAPE, generator=torch.Generator().manual_seed(0)) * 2 - 1
    write = {"onnx": _export_onnx, "torchscript": _export_torchscript, "compact": _export_compact}[fmt]
    with replacing(out) as tmp:  # renamed into place once verified: a failed export leaves no file
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            # the tracer warns that the padding decision is fixed: it is taken (odd example size) and
            # pads by zero where no padding is needed, so the graph holds for every size
            warnings.simplefilter("ignore")
            write(generator, example, tmp, metadata or {})
        if verify_size is not None:
            verify(generator, tmp, fmt, verify_size)
    return out


HELP = "Export a trained colorgan generator (L -> ab) to ONNX or TorchScript with dynamic batch, height and width."
EPILOG = f"""\
the exported model:
  input  "{INPUT_NAME}":  float32 (B, 1, H, W), L*/50 - 1 in [-1, 1] (CIE Lab L*, 0..100)
  output "{OUTPUT_NAME}": float32 (B, 2, H, W), (a*, b*)/110 in [-1, 1]
  B, H and W are dynamic; any H, W >= 1 works (padding to the network's multiple is inside the
  graph). Eval mode: dropout off, noise inputs z = 0, batch norm with running statistics
  (a checkpoint with model.stochastic_inference=true needs --deterministic). The training size and
  generator settings are stored as metadata (ONNX metadata_props, TorchScript extra file
  colorgan.json). The output is run and compared with PyTorch (within {TOLERANCE}) before it is kept.
  TorchScript is deprecated by PyTorch; prefer ONNX for new deployments.

--out is checked first: a folder, or a place that cannot be written, fails before any work; so
does an --out that is the --ckpt itself, an existing .ckpt, a file in a run's checkpoints/ folder
or a model folder's model.safetensors or config.json (nothing an export may replace). A folder
(--format folder) is replaced only when its config.json says colorgan wrote it; when it holds
other files too (a git clone: .git/, LICENSE, notes), colorgan's files are updated and the rest kept.

exit status (the same for every colorgan command): 0 written and verified; 1 failed, "colorgan-export:
  error: ..." on stderr (nothing written); 2 the command line itself is wrong (unknown flag, missing --ckpt).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=HELP, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_model_arguments(parser, device=False)
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="onnx",
        help="onnx (default), torchscript, or compact: a colorgan checkpoint of the generator alone in fp16, "
        "for evaluate.py, colorgan-colorize and model.init_from, or folder: a shareable model folder "
        "(model.safetensors, config.json, README.md model card; the Hugging Face Hub layout)",
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="file to write (e.g. model.onnx, model.pt), or the folder (folder)"
    )
    parser.add_argument("--metrics", type=Path, help="folder: evaluate.py's metrics.json, shown in the model card")
    parser.add_argument("--samples", type=Path, help="folder: a sample grid (PNG) for the model card")
    parser.add_argument(
        "--raw-weights", action="store_true", help="the trained weights even when the checkpoint has a weight average"
    )
    parser.add_argument("--no-verify", action="store_true", help="skip running the written file against PyTorch")
    parser.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="classification models: the annealed-mean T the export decodes with (default: the model's own)",
    )
    parser.add_argument(
        "--fp16", action="store_true", help="folder: store the weights in fp16 (half the size; default float32)"
    )
    parser.add_argument(
        "--deterministic",
        action="store_true",
        help="export a generator trained with model.stochastic_inference=true in its deterministic form "
        "(dropout off, noise z = 0); without it such a checkpoint is refused",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Export --ckpt to --out; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.format == "folder":
            wrote = export_folder(args)
        else:
            check_output_file(args.out, example=EXAMPLE_NAMES[args.format])
            check_not_an_input(args.out, [("--ckpt", args.ckpt)])
            generator, hparams = load_generator(args.ckpt, "cpu", stochastic=False, ema=not args.raw_weights)
            hparams = with_temperature(generator, hparams, args.temperature, args.ckpt)
            if hparams.get("stochastic_inference") and not args.deterministic:
                raise ExportError(
                    f"{args.ckpt} samples colours at inference (model.stochastic_inference=true: dropout and noise "
                    "stay random), which an exported file cannot reproduce or be verified against; pass "
                    "--deterministic to export its deterministic form (dropout off, z = 0)"
                )
            size = working_size(args.ckpt, hparams, args.size)
            verify_size = None if args.no_verify else size
            export_generator(generator, args.out, args.format, describe(hparams, args.ckpt), verify_size)
            wrote = f"{args.format}; input {INPUT_NAME} (B, 1, H, W) -> output {OUTPUT_NAME} (B, 2, H, W)"
    except ImportError as err:
        return fail(PROG, f"{err}; install the extras: pip install 'colorgan[export]'")
    except (ColorganError, ValueError, RuntimeError, OSError) as err:
        return fail(PROG, err)
    print(f"wrote {args.out} ({wrote})")
    return 0


def export_folder(args: argparse.Namespace) -> str:
    """``--format folder``: write the model folder, then check it rebuilds the same generator, tensor for tensor."""
    check_output_folder(args.out)
    check_not_an_input(args.out, [("--ckpt", args.ckpt)])
    check_replaceable(args.out)
    metrics = read_metrics(args.metrics) if args.metrics else None
    if args.samples:
        check_image(args.samples)
    ckpt = read_generator_source(args.ckpt)  # read once: which weights it holds, then the generator
    averaged = not args.raw_weights and has_weight_average(ckpt)
    generator, hparams = load_generator(args.ckpt, "cpu", ema=not args.raw_weights, ckpt=ckpt)
    hparams = with_temperature(generator, hparams, args.temperature, args.ckpt)
    weights = "the moving average of the generator's weights" if averaged else "the trained weights"
    half = args.fp16
    save_model_folder(generator, hparams, args.out, weights=weights, metrics=metrics, samples=args.samples, half=half)
    rebuilt, _ = load_generator(args.out, "cpu")
    pairs = zip(generator.state_dict().values(), rebuilt.state_dict().values())
    if not all(torch.equal(stored(a, half).to(b.dtype), b) for a, b in pairs):
        raise ExportError(f"{args.out} does not rebuild the generator of {args.ckpt}")
    return f"model.safetensors ({'fp16' if half else 'fp32'}), config.json, README.md; {weights}"


def with_temperature(generator: nn.Module, hparams: dict, temperature: float | None, ckpt: str) -> dict:
    """``--temperature``: decode with T from now on, and record it where the exported settings are read."""
    if temperature is None:
        return hparams
    if not set_temperature(generator, temperature):
        raise ExportError(f"--temperature applies to classification models; {ckpt} regresses ab directly")
    return {**hparams, "generator": {**(hparams.get("generator") or {}), "temperature": temperature}}


def read_metrics(path: Path) -> dict[str, Any]:
    """``--metrics``: evaluate.py's metrics.json, a JSON object whose ``models`` map names to rows of numbers."""
    metrics, problem = read_json_object(path, MAX_METRICS_BYTES, "evaluate.py's metrics.json")
    if problem is None and not (
        isinstance(metrics.get("models", {}), dict)
        and all(isinstance(r, dict) for r in metrics.get("models", {}).values())
    ):
        problem = 'has a "models" entry that is not an object of rows, as evaluate.py writes'
    if problem:
        raise ModelFolderError(f"--metrics {path} {problem}; pass the metrics.json of an evaluate.py run")
    return metrics


def check_image(path: Path) -> None:
    """``--samples`` is an image (its header and structure are checked, its pixels not decoded)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.verify()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ModelFolderError(
            f"--samples {path} is not an image colorgan can read ({type(err).__name__}: {str(err)[:200]}); pass a "
            "sample grid, e.g. the samples.png of an evaluate.py run"
        ) from err


if __name__ == "__main__":
    sys.exit(main())
