"""A local web page for colorizing one photo at a time: upload, compare gray and colour, download.

The page runs the very steps of ``colorgan-colorize`` on an upload (decoding, colorizing, the
marked PNG), so what it offers for download is byte for byte the file the command writes for
that photo, and an unreadable upload gets the command's message. The gray picture is the same
rendering with no colour (the photo's own L, ab = 0): exactly what the model sees.

Command line: ``colorgan-demo --ckpt CKPT`` (``--help``); needs the ``demo`` extra (gradio).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import torch
from PIL import Image, ImageDraw
from torch import nn

# The inference steps colorgan-colorize runs, imported here only.
from colorgan.apps.cli import ArgumentError, add_model_arguments, check_size_option, load_model
from colorgan.apps.colorize import reduced_note, save_colorized
from colorgan.data import images as image_files
from colorgan.data.images import BadImageError, decode_image
from colorgan.errors import ColorganError, fail
from colorgan.inference import MODES, GrayBaseline, NonFiniteOutputError, colorize_image
from colorgan.models import ColorBinsGenerator, set_temperature
from colorgan.models.layers import STOCHASTIC_MODULES

if TYPE_CHECKING:
    import gradio as gr

PROG = "colorgan-demo"
DEFAULT_MODEL = "cifar10-colourful"  # shipped in colorgan/pretrained: the page works before any training
# Pixels colorized per upload: a 4000 x 3000 phone photo. The page colorizes one photo at a time, so a
# visitor's 150 MP scan (what colorgan-colorize accepts) would hold it for everyone for a minute or more.
DEFAULT_MAX_PIXELS = 12_000_000


class Colorized(NamedTuple):
    gray: Path
    colour: Path  # the PNG colorgan-colorize writes for this photo
    note: str | None  # said when a huge JPEG was colorized at a reduced scale


def samples_colours(generator: nn.Module) -> bool:
    """True when dropout or noise inputs stay random at inference: each seed gives another colouring."""
    return any(m.training for m in generator.modules() if isinstance(m, STOCHASTIC_MODULES))


def check_upload_pixels(upload: str | Path, max_pixels: int) -> None:
    """Refuse an upload above ``max_pixels`` from its header, before a pixel of it is decoded.

    A file whose header cannot be read passes: decoding it then says why, as colorgan-colorize does.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(upload) as im:
                width, height = im.size
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
        return
    if width * height > max_pixels:
        raise BadImageError(
            Path(upload).name,
            f"{width} x {height} pixels is more than the {max_pixels / 1e6:g} MP this page colorizes per photo "
            f"(colorgan-demo --max-megapixels); downscale it, or colorize it with colorgan-colorize",
        )


def colorize_upload(
    upload: str | Path,
    generator: nn.Module,
    size: int,
    mode: str,
    seed: int | None,
    folder: Path,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Colorized:
    """Colorize one uploaded file as colorgan-colorize does; write the gray and colour PNGs into ``folder``.

    Raises :class:`BadImageError` naming the file as it was uploaded, also for one above ``max_pixels``.
    ``seed`` seeds the generator's noise (ignored by a deterministic generator).
    """
    name = Path(upload).name
    check_upload_pixels(upload, max_pixels)
    try:
        decoded = decode_image(upload)
    except BadImageError as err:
        raise BadImageError(name, err.reason) from None
    if seed is not None:
        torch.manual_seed(seed)
    colour = colorize_image(generator, decoded.image, size, mode)
    gray = colorize_image(GrayBaseline(), decoded.image, size)
    stem = Path(name).stem
    result = Colorized(folder / f"{stem}_gray.png", folder / f"{stem}_colorized.png", None)
    gray.save(result.gray, compress_level=1)
    save_colorized(colour, result.colour, name)
    return result._replace(note=reduced_note(Path(name), decoded) if decoded.scale > 1 else None)


# Flat shapes in bold colours: (kind, box or points, RGB). Drawn, not shipped, so no licence question.
EXAMPLE_SCENES: dict[str, list[tuple[str, tuple, tuple[int, int, int]]]] = {
    "meadow.png": [
        ("rectangle", (0, 0, 320, 150), (110, 170, 235)),
        ("ellipse", (225, 20, 285, 80), (250, 210, 60)),
        ("ellipse", (-90, 110, 230, 340), (80, 160, 60)),
        ("ellipse", (110, 125, 420, 360), (40, 115, 45)),
        ("rectangle", (55, 130, 125, 185), (175, 40, 35)),
        ("polygon", ((48, 132), (90, 98), (132, 132)), (110, 35, 30)),
    ],
    "harbour.png": [
        ("rectangle", (0, 0, 320, 120), (250, 180, 120)),
        ("rectangle", (0, 120, 320, 200), (30, 90, 160)),
        ("rectangle", (0, 200, 320, 240), (225, 200, 150)),
        ("polygon", ((40, 150), (140, 150), (125, 172), (55, 172)), (200, 30, 40)),
        ("polygon", ((88, 148), (88, 80), (128, 148)), (245, 245, 240)),
        ("polygon", ((180, 140), (290, 140), (275, 160), (195, 160)), (250, 200, 30)),
    ],
    "fruit.png": [
        ("rectangle", (0, 0, 320, 140), (90, 120, 110)),
        ("rectangle", (0, 140, 320, 240), (140, 90, 50)),
        ("ellipse", (40, 100, 130, 190), (245, 140, 20)),
        ("ellipse", (120, 110, 200, 190), (200, 25, 35)),
        ("ellipse", (190, 95, 290, 195), (120, 190, 50)),
        ("ellipse", (150, 95, 180, 115), (40, 140, 40)),
    ],
}


def draw_examples(folder: Path) -> list[Path]:
    """Write the example scenes (320 x 240 PNGs) into ``folder``: pictures to try without a photo of one's own."""
    paths = []
    for name, shapes in EXAMPLE_SCENES.items():
        image = Image.new("RGB", (320, 240))
        draw = ImageDraw.Draw(image)
        for kind, where, fill in shapes:
            getattr(draw, kind)(where, fill=fill)
        image.save(path := folder / name)
        paths.append(path)
    return paths


def build_app(generator: nn.Module, size: int, examples: list[Path], max_pixels: int = DEFAULT_MAX_PIXELS) -> gr.Blocks:
    """The page: an upload, mode and (for generators that sample) seed, then gray | colorized | slider.

    Uploads above ``max_pixels`` are refused with a message on the page.
    """
    import gradio as gr

    stochastic = samples_colours(generator)
    default_temperature = generator.temperature if isinstance(generator, ColorBinsGenerator) else None
    one_at_a_time = threading.Lock()  # the generator and torch's seed are shared by every visitor

    with gr.Blocks(title="colorgan", analytics_enabled=False, delete_cache=(1800, 3600)) as app:
        gr.Markdown(
            "## colorgan: colorize a photo\nThe output keeps the photo's own lightness at full resolution; the model "
            "adds colour. The download is the PNG `colorgan-colorize` writes for the same photo. "
            f"Photos up to {max_pixels / 1e6:g} MP."
        )
        with gr.Row():
            with gr.Column():
                upload = gr.File(label="photo", file_types=["image"], elem_id="photo")
                mode = gr.Radio(list(MODES), value="full", label="mode", elem_id="mode")
                gr.Markdown(
                    "`full`: colour predicted on a copy at the model's training size, upsampled. "
                    "`tiles`: overlapping windows at full resolution, blended."
                )
                seed = gr.Number(value=0, precision=0, label="seed", visible=stochastic, elem_id="seed")
                temperature = gr.Slider(
                    0.05,
                    1.0,
                    value=default_temperature or 0.38,
                    step=0.01,
                    label="temperature (lower: more vivid colours; 1: the safe average)",
                    visible=default_temperature is not None,
                    elem_id="temperature",
                )
                another = gr.Button("another sample", visible=stochastic, elem_id="another")
                download = gr.DownloadButton("download PNG (full resolution)", elem_id="download")
                gr.Examples([[str(p)] for p in examples], inputs=[upload], label="examples (drawn scenes)")
            shown = {"type": "filepath", "format": "png", "buttons": ["download", "fullscreen"]}
            gray = gr.Image(label="gray (what the model sees)", elem_id="gray", **shown)
            colour = gr.Image(label="colorized", elem_id="colorized", **shown)
            slider = gr.ImageSlider(label="before / after", elem_id="slider", **shown)

        def run(path: str | None, mode_name: str, seed_value: float | None, t: float | None = None) -> tuple:
            if path is None:
                return None, None, None, None
            chosen_seed = int(seed_value or 0) if stochastic else None
            with one_at_a_time, tempfile.TemporaryDirectory(prefix="colorgan-demo-") as folder:
                set_temperature(generator, float(t) if t and default_temperature is not None else None)
                try:
                    result = colorize_upload(path, generator, size, mode_name, chosen_seed, Path(folder), max_pixels)
                except (BadImageError, NonFiniteOutputError) as err:
                    raise gr.Error(str(err), duration=None, print_exception=False) from None
                served = [download.move_resource_to_block_cache(p) for p in (result.gray, result.colour)]
            if result.note:
                gr.Warning(result.note)
            return served[0], served[1], tuple(served), served[1]

        inputs, outputs = [upload, mode, seed, temperature], [gray, colour, slider, download]
        for event in (upload.change, mode.change, seed.submit, temperature.release):
            event(run, inputs, outputs)
        another.click(lambda s: int(s or 0) + 1, seed, seed).then(run, inputs, outputs)
    return app


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="A local web page that colorizes uploaded photos with a trained colorgan generator.",
    )
    add_model_arguments(parser, ckpt_default=DEFAULT_MODEL)
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this machine)")
    parser.add_argument("--port", type=int, default=7860, help="port to serve on (default 7860)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link (off by default)")
    parser.add_argument(
        "--max-megapixels",
        type=float,
        default=DEFAULT_MAX_PIXELS / 1e6,
        help=f"largest upload colorized, in megapixels (default {DEFAULT_MAX_PIXELS / 1e6:g}; larger ones are refused "
        "on the page: one photo is colorized at a time)",
    )
    parser.add_argument(
        "--stochastic",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep dropout and noise inputs random, with a seed on the page (default: as the run was trained)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Load the generator, then serve the page until interrupted; 1 when it cannot start (colorgan.errors)."""
    args = build_parser().parse_args(argv)
    cap = image_files.MAX_DECODED_PIXELS / 1e6
    try:
        check_size_option(args.size)
        if not 0 < args.max_megapixels <= cap:
            raise ArgumentError(
                f"--max-megapixels must be in (0, {cap:g}] (colorgan-colorize's cap), got {args.max_megapixels}"
            )
        if importlib.util.find_spec("gradio") is None:
            raise ArgumentError('needs gradio, in the demo extra: pip install -e ".[demo]"')
        generator, _, size = load_model(args, stochastic=args.stochastic)
    except (ColorganError, ValueError) as err:
        return fail(PROG, err)
    with tempfile.TemporaryDirectory(prefix="colorgan-demo-examples-") as folder:
        app = build_app(generator, size, draw_examples(Path(folder)), round(args.max_megapixels * 1e6))
        app.launch(server_name=args.host, server_port=args.port, share=args.share, show_error=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
