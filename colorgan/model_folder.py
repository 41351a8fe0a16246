"""Model folders to share: the generator alone as safetensors, a config.json and a model card.

The layout is the Hugging Face Hub's (``model.safetensors``, ``config.json``, ``README.md`` with
YAML front matter), so a folder can be pushed as it is (``huggingface-cli upload USER/NAME DIR``).
Loading one reads tensors and JSON only: no pickle, so no code runs. Everything that takes a
checkpoint (colorize, evaluate.py, export, the demo, ``model.init_from``) takes a model folder too.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from colorgan.color import AB_SCALE, L_SCALE
from colorgan.io import markdown_table

CONFIG_NAME, WEIGHTS_NAME, CARD_NAME, SAMPLES_NAME = "config.json", "model.safetensors", "README.md", "samples.png"
FORMAT = "colorgan-generator"
FORMAT_VERSION = 1
CARD_METRICS = ("psnr", "ssim", "delta_e", "colorfulness", "probe_accuracy", "fid_probe")
RECIPE_KEYS = ("lambda_l1", "lambda_gan", "recon_loss", "gan_mode", "lr", "lr_d", "betas", "ema_decay", "init_from")


class ModelFolderError(ValueError):
    """A folder that is not (or no longer) a colorgan model folder; the message names the file."""


# Model folders that ship inside the package, loadable by name: --ckpt cifar10-colourful
SHIPPED_DIR = Path(__file__).parent / "pretrained"


def shipped_models() -> list[str]:
    return sorted(p.name for p in SHIPPED_DIR.iterdir() if is_model_folder(p)) if SHIPPED_DIR.is_dir() else []


def resolve_model_path(path: str | Path) -> Path:
    """A path as given, or a shipped model's folder when ``path`` is one's bare name and no such file exists here."""
    given = Path(path).expanduser()
    if given.exists() or len(given.parts) != 1 or not is_model_folder(SHIPPED_DIR / given.name):
        return given
    return SHIPPED_DIR / given.name


def is_model_folder(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / CONFIG_NAME).is_file()


def make_config(hparams: dict[str, Any], weights: str) -> dict[str, Any]:
    """What a user of the weights needs: the architecture, its training size, Lab normalisation, inference mode."""
    generator = dict(hparams.get("generator") or {})
    generator.pop("weights_path", None)
    generator["pretrained"] = False if "pretrained" in generator else generator.get("pretrained")
    generator = {k: v for k, v in generator.items() if v is not None}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "generator": generator,
        "image_size": generator.get("image_size"),
        "input": {"name": "L", "shape": "(B, 1, H, W)", "value": f"L* / {L_SCALE:g} - 1, in [-1, 1]"},
        "output": {"name": "ab", "shape": "(B, 2, H, W)", "value": f"(a*, b*) / {AB_SCALE:g}, in [-1, 1]"},
        "color_space": "CIE Lab, D65 white, sRGB primaries",
        "stochastic_inference": bool(hparams.get("stochastic_inference", False)),
        "weights": weights,
        "recipe": {k: hparams[k] for k in RECIPE_KEYS if hparams.get(k) is not None},
    }


def model_card(config: dict[str, Any], metrics: dict[str, Any] | None, has_samples: bool, name: str) -> str:
    """README.md: front matter for the Hub, what the model does, how it was trained and scored, how to use it."""
    generator = config["generator"]
    lines = [
        "---",
        "library_name: colorgan",
        "pipeline_tag: image-to-image",
        "tags: [image-colorization, pix2pix, gan, lab-color]",
        "---",
        "",
        f"# {name}",
        "",
        f"An automatic image colorizer: a `{generator.get('name')}` generator that predicts the a*b* chroma of "
        f"CIE Lab from the lightness L*, trained at {config['image_size']} x {config['image_size']} with colorgan "
        "(pix2pix's conditional GAN in Lab). Photos of any size keep their own full-resolution L*.",
        "",
        "## Training",
        "",
        markdown_table(["setting", "value"], [[k, v] for k, v in config["recipe"].items()])
        + f"\nWeights: {config['weights']}.",
    ]
    if metrics:
        models = metrics.get("models", {})
        columns = [c for c in CARD_METRICS if any(c in row for row in models.values())]
        rows = [[n, *(f"{row[c]:.4g}" if c in row else "" for c in columns)] for n, row in models.items()]
        lines += [
            "",
            "## Evaluation",
            "",
            f"`evaluate.py` on {metrics.get('split', 'the test split')} ({metrics.get('num_images', '?')} images); "
            "`gray` keeps L and sets ab = 0.",
            "",
            markdown_table(["model", *columns], rows),
        ]
    if has_samples:
        lines += ["", "## Samples", "", f"![gray, colorized, truth]({SAMPLES_NAME})"]
    lines += [
        "",
        "## Use",
        "",
        "```bash",
        "pip install colorgan",
        "colorgan-colorize photo.jpg --ckpt THIS_FOLDER --out colorized/",
        "colorgan-demo --ckpt THIS_FOLDER",
        "```",
        "",
        "Without colorgan: load `model.safetensors` into the generator described by `config.json`, feed "
        "`L*/50 - 1`, read `(a*, b*)/110`.",
        "",
    ]
    return "\n".join(lines)


def stored(tensor: torch.Tensor, half: bool) -> torch.Tensor:
    """A tensor as a model folder stores it: on the CPU, contiguous, floating point in fp16 when ``half``."""
    tensor = tensor.detach().cpu().contiguous()
    return tensor.half() if half and tensor.is_floating_point() else tensor


def save_model_folder(
    generator: nn.Module,
    hparams: dict[str, Any],
    out: str | Path,
    *,
    weights: str = "the trained weights",
    metrics: dict[str, Any] | None = None,
    samples: str | Path | None = None,
    half: bool = False,
) -> Path:
    """Write the folder whole (built beside ``out``, then renamed): weights, config, card, sample grid.

    ``half``: floating-point tensors stored as fp16 (half the size, a few MB for a CIFAR-10 U-Net; loading
    casts them back to the network's float32, a change below 1e-3 relative that no rendered pixel shows).

    An existing ``out`` is replaced only if it is an earlier model folder; any other folder is refused.
    """
    out = Path(out)
    if out.exists() and not is_model_folder(out):
        raise ModelFolderError(
            f"{out} exists and is not a colorgan model folder; nothing was written (choose a new --out, "
            "or remove it yourself)"
        )
    config = make_config(hparams, weights)
    state = {k: stored(v, half) for k, v in generator.state_dict().items()}
    building, old = (out.with_name(f".{out.name}.{os.getpid()}.{what}") for what in ("building", "old"))
    try:
        building.mkdir(parents=True)
        save_file(state, building / WEIGHTS_NAME, metadata={"format": "pt"})
        (building / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        if samples:
            shutil.copyfile(samples, building / SAMPLES_NAME)
        (building / CARD_NAME).write_text(model_card(config, metrics, bool(samples), out.name), encoding="utf-8")
        if out.exists():
            out.rename(old)  # an earlier export of this folder: replaced only once the new one is complete
        building.rename(out)
    finally:
        shutil.rmtree(building, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return out


def load_as_checkpoint(path: str | Path) -> dict[str, Any]:
    """A model folder in the shape of a training checkpoint (``state_dict`` + ``hyper_parameters``)."""
    path = Path(path)
    try:
        config = json.loads((path / CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelFolderError(f"{path / CONFIG_NAME} cannot be read as JSON ({err})") from err
    if config.get("format") != FORMAT:
        raise ModelFolderError(
            f'{path / CONFIG_NAME} is not a colorgan model folder\'s config (no "format": "{FORMAT}"); '
            "write one with colorgan-export --format folder"
        )
    if not (path / WEIGHTS_NAME).is_file():
        raise ModelFolderError(f"{path} has no {WEIGHTS_NAME}; export the folder again")
    try:
        state = load_file(path / WEIGHTS_NAME)
    except Exception as err:  # safetensors raises its own error types for damaged files
        raise ModelFolderError(f"{path / WEIGHTS_NAME} is damaged ({type(err).__name__}: {err})") from err
    hparams = {"generator": config["generator"], "stochastic_inference": config.get("stochastic_inference", False)}
    hparams.update(config.get("recipe", {}))
    return {"state_dict": {f"generator.{k}": v for k, v in state.items()}, "hyper_parameters": hparams}
