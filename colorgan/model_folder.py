"""Model folders to share: the generator alone as safetensors, a config.json and a model card.

The layout is the Hugging Face Hub's (``model.safetensors``, ``config.json``, ``README.md`` with
YAML front matter), so a folder can be pushed as it is (``huggingface-cli upload USER/NAME DIR``).
Loading one reads tensors and JSON only: no pickle, so no code runs. Everything that takes a
checkpoint (colorize, evaluate.py, export, the demo, ``model.init_from``) takes a model folder too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from contextlib import suppress
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from colorgan.color import AB_SCALE, L_SCALE
from colorgan.errors import ColorganError
from colorgan.files import is_stale, read_json_object
from colorgan.markdown import markdown_table

CONFIG_NAME, WEIGHTS_NAME, CARD_NAME, SAMPLES_NAME = "config.json", "model.safetensors", "README.md", "samples.png"
FORMAT = "colorgan-generator"
FORMAT_VERSION = 1
CARD_METRICS = ("psnr", "ssim", "delta_e", "colorfulness", "probe_accuracy", "probe_gap", "fid_probe")
RECIPE_KEYS = (
    "lambda_l1", "lambda_gan", "recon_loss", "rebalance", "gan_mode", "lr", "lr_d", "betas", "weight_decay",
    "ema_decay", "init_from",
)  # fmt: skip
# what a recipe key means only for one kind of generator head: the other's loss ignores it
HEAD_ONLY_KEYS = {"recon_loss": "regression", "rebalance": "classification"}
OWN_FILES = (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME, SAMPLES_NAME)  # all that save_model_folder writes
MAX_CONFIG_BYTES = 1 << 20  # colorgan's config.json is about 2 KB; a larger one is not read


class ModelFolderError(ColorganError, ValueError):
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


def _recipe_value(key: str, value: Any) -> Any:
    """``init_from`` as the run and file it started from (``<run>/checkpoints/last.ckpt``): the rest of the
    path names the trainer's own disk, which means nothing to whoever reads the card."""
    if key != "init_from":
        return value
    parts = Path(str(value)).parts
    return "/".join(parts[-3:]) if len(parts) >= 3 and parts[-2] == "checkpoints" else Path(str(value)).name


def make_config(hparams: dict[str, Any], weights: str) -> dict[str, Any]:
    """What a user of the weights needs: the architecture, its training size, Lab normalisation, inference mode."""
    generator = dict(hparams.get("generator") or {})
    generator.pop("weights_path", None)
    generator["pretrained"] = False if "pretrained" in generator else generator.get("pretrained")
    generator = {k: v for k, v in generator.items() if v is not None}
    head = generator.get("head", "regression")
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
        "recipe": {
            k: _recipe_value(k, hparams[k])
            for k in RECIPE_KEYS
            if hparams.get(k) is not None and HEAD_ONLY_KEYS.get(k, head) == head
        },
    }


def _cell(value: Any) -> str:
    """A metric in the card's table: a number to 4 digits; anything else as it is, blank if absent."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.4g}"
    return "" if value is None else str(value)


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
        rows = [[n, *(_cell(row.get(c)) for c in columns)] for n, row in models.items()]
        lines += [
            "",
            "## Evaluation",
            "",
            f"`evaluate.py` on {metrics.get('split', 'the test split')}; `gray` keeps L and sets ab = 0.",
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


def says_colorgan(folder: str | Path) -> bool:
    """Whether ``folder/config.json`` says the folder is a colorgan model folder: the only kind colorgan changes."""
    try:
        return read_config(Path(folder)).get("format") == FORMAT
    except ModelFolderError:
        return False


def check_replaceable(out: Path) -> None:
    """``out`` is new, or a model folder colorgan wrote; anything else is refused before any work."""
    if not (out.exists() or out.is_symlink()):
        return
    if out.is_dir() and says_colorgan(out):
        return
    if (out / CONFIG_NAME).is_file():
        raise ModelFolderError(
            f'{out / CONFIG_NAME} has no "format": "{FORMAT}", so {out} is a folder colorgan did not write, and it '
            "is never replaced; nothing was written (choose a new --out)"
        )
    raise ModelFolderError(
        f"{out} exists and is not a colorgan model folder; nothing was written (choose a new --out, "
        "or remove it yourself)"
    )


def _remove_own_files(folder: Path) -> None:
    """Remove what save_model_folder wrote in ``folder``, then the folder if nothing else is left in it."""
    for name in OWN_FILES:
        with suppress(OSError):
            (folder / name).unlink()
    with suppress(OSError):
        folder.rmdir()  # fails, keeping it, if it holds anything colorgan did not write


def remove_stale_builds(out: Path) -> None:
    """``.NAME.PID.building`` and ``.NAME.PID.old`` beside ``out`` whose writer was killed: their own files go."""
    pattern = re.compile(rf"^\.{re.escape(out.name)}\.(\d+)\.(building|old)$")
    for path in out.parent.glob(f".{out.name}.*"):
        match = pattern.match(path.name)
        if match and is_stale(int(match.group(1))) and path.is_dir() and not path.is_symlink():
            _remove_own_files(path)


def _write_files(
    folder: Path,
    generator: nn.Module,
    config: dict[str, Any],
    metrics: dict[str, Any] | None,
    samples: Any,
    name: str,
    half: bool = False,
) -> None:
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    state = {k: stored(v, half) for k, v in generator.state_dict().items()}
    save_file(state, folder / WEIGHTS_NAME, metadata={"format": "pt"})
    # safetensors creates its file private (0600); it gets the mode (umask) of its siblings
    os.chmod(folder / WEIGHTS_NAME, (folder / CONFIG_NAME).stat().st_mode & 0o777)
    if samples:
        shutil.copyfile(samples, folder / SAMPLES_NAME)
    (folder / CARD_NAME).write_text(model_card(config, metrics, bool(samples), name), encoding="utf-8")


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
    """Write the folder (built beside ``out``, then renamed): weights, config, card, sample grid.

    An existing ``out`` is changed only if its config.json says colorgan wrote it, and no file colorgan
    did not write is ever removed: a folder of colorgan's files alone is replaced whole; one that also
    holds other files (a git clone: ``.git/``, a LICENSE, notes) gets colorgan's files replaced one by
    one and keeps the rest. Folders left by a writer that was killed are removed first.

    ``half``: floating-point tensors stored as fp16 (half the size, a few MB for a CIFAR-10 U-Net; loading
    casts them back to the network's float32, a change below 1e-3 relative that no rendered pixel shows).
    """
    out = Path(out)
    remove_stale_builds(out)
    check_replaceable(out)
    config = make_config(hparams, weights)
    building, old = (out.with_name(f".{out.name}.{os.getpid()}.{what}") for what in ("building", "old"))
    try:
        building.mkdir(parents=True)
        _write_files(building, generator, config, metrics, samples, out.name, half)
        if out.is_dir() and any(p.name not in OWN_FILES for p in out.iterdir()):
            for path in building.iterdir():  # others' files are kept: colorgan's are replaced, each atomically
                os.replace(path, out / path.name)
        else:
            if out.exists():
                out.rename(old)  # an earlier export of this folder: replaced only once the new one is complete
            building.rename(out)
    finally:
        for folder in (building, old):
            if folder.is_dir():
                _remove_own_files(folder)
    return out


def read_config(folder: Path) -> dict[str, Any]:
    """``folder/config.json`` as a JSON object; one of more than :data:`MAX_CONFIG_BYTES` is not read."""
    path = folder / CONFIG_NAME
    config, problem = read_json_object(
        path, MAX_CONFIG_BYTES, "a model's settings", missing="is missing: it says which network the weights are for"
    )
    if problem:
        raise ModelFolderError(f"{path} {problem}; export the folder again (colorgan-export --format folder)")
    return config


def load_as_checkpoint(path: str | Path) -> dict[str, Any]:
    """A model folder in the shape of a training checkpoint (``state_dict`` + ``hyper_parameters``).

    The shape of config.json is checked here; its generator's settings, against bounds and against the
    weights' shapes, by :func:`colorgan.checkpoint.load_generator` before anything is built.
    """
    path = Path(path)
    config = read_config(path)
    if config.get("format") != FORMAT:
        raise ModelFolderError(
            f'{path / CONFIG_NAME} is not a colorgan model folder\'s config (no "format": "{FORMAT}"); '
            "write one with colorgan-export --format folder"
        )
    generator, recipe = config.get("generator"), config.get("recipe", {})
    stochastic = config.get("stochastic_inference", False)
    if not isinstance(generator, dict) or not isinstance(generator.get("name"), str):
        problem = '"generator" is missing' if generator is None else '"generator" is not an object'
        raise ModelFolderError(
            f'{path / CONFIG_NAME}: {problem}; it says which network the weights are for ({{"name": "unet", ...}}); '
            "export the folder again"
        )
    if not isinstance(recipe, dict) or not isinstance(stochastic, bool):
        key = "recipe" if not isinstance(recipe, dict) else "stochastic_inference"
        raise ModelFolderError(f'{path / CONFIG_NAME}: "{key}" has the wrong type; export the folder again')
    if not (path / WEIGHTS_NAME).is_file():
        raise ModelFolderError(f"{path} has no {WEIGHTS_NAME}; export the folder again")
    try:
        state = load_file(path / WEIGHTS_NAME)
    except Exception as err:  # safetensors raises its own error types for damaged files
        raise ModelFolderError(f"{path / WEIGHTS_NAME} is damaged ({type(err).__name__}: {err})") from err
    hparams = {**recipe, "generator": generator, "stochastic_inference": stochastic}
    return {"state_dict": {f"generator.{k}": v for k, v in state.items()}, "hyper_parameters": hparams}
