"""Part ``infer``: colorizing one large photo, whole and in tiles."""

from __future__ import annotations

from typing import Any

import torch

from colorgan.bench.common import median_seconds, smooth_uint8_images


def part_infer(device: torch.device, quick: bool, repeats: int) -> list[dict[str, Any]]:
    """Colorizing one 2048 x 1536 photo with a 256-px U-Net, in full and tiles mode."""
    from PIL import Image

    from colorgan.inference import colorize_image
    from colorgan.models import UNetGenerator

    width, height = (256, 192) if quick else (2048, 1536)
    generator = UNetGenerator(image_size=256, ngf=8 if quick else 64).to(device).eval()
    photo = smooth_uint8_images(1, max(width, height), torch.device("cpu"))[0, :, :height, :width]
    image = Image.fromarray(photo.permute(1, 2, 0).numpy())
    rows = []
    for mode in ("full", "tiles"):
        seconds = median_seconds(
            lambda mode=mode: colorize_image(generator, image, size=256, mode=mode),
            device,
            repeats=max(1, repeats // 2),
            warmup=1,
        )
        rows.append({"mode": mode, "width": width, "height": height, "seconds": seconds})
    rows.append(
        {
            "mode": "ratio tiles/full",
            "width": width,
            "height": height,
            "seconds": rows[1]["seconds"] / rows[0]["seconds"],
        }
    )
    return rows
