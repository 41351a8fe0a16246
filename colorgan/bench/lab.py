"""Part ``lab``: colorgan's batched RGB -> Lab conversion against scikit-image per image (pix2pix's way)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from colorgan.bench.common import median_seconds, smooth_uint8_images
from colorgan.color import rgb_to_lab_normalized


class SkimageLabDataset(Dataset):
    """The official pix2pix colorization dataset's way: scikit-image ``rgb2lab`` per image."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        from skimage.color import rgb2lab

        lab = rgb2lab(self.images[index]).astype(np.float32)
        lab_t = torch.from_numpy(lab).permute(2, 0, 1)
        return lab_t[:1] / 50.0 - 1.0, lab_t[1:] / 110.0


def part_lab(device: torch.device, quick: bool, repeats: int, compile_lab: bool) -> list[dict[str, Any]]:
    from kornia.color import rgb_to_lab
    from skimage.color import rgb2lab

    rows = []
    for size, batch in ((32, 256), (256, 64)) if not quick else ((32, 16), (64, 4)):
        images = smooth_uint8_images(batch, size, device)
        host = images.permute(0, 2, 3, 1).cpu().numpy()
        dataset = SkimageLabDataset(host)
        base = median_seconds(lambda ds=dataset: [ds[i] for i in range(len(ds))], torch.device("cpu"), repeats, 1)
        reference = torch.from_numpy(np.stack([rgb2lab(im) for im in host[:8]])).permute(0, 3, 1, 2).float()

        def max_error(L: torch.Tensor, ab: torch.Tensor, reference: torch.Tensor = reference) -> float:
            lab = torch.cat([(L[:8].cpu() + 1) * 50, ab[:8].cpu() * 110], 1)
            return float((lab - reference).abs().max())

        candidates: list[tuple[str, Callable[[], Any]]] = [
            ("kornia rgb_to_lab (batched)", lambda images=images: rgb_to_lab(images.float() / 255.0)),
            ("colorgan (batched, uint8 table)", lambda images=images: rgb_to_lab_normalized(images)),
        ]
        if compile_lab:
            rgb_to_lab_normalized(images, compiled=True)  # compile outside the timing
            compiled = lambda images=images: rgb_to_lab_normalized(images, compiled=True)
            candidates.append(("colorgan + torch.compile", compiled))
        rows.append(
            {
                "size": size,
                "batch": batch,
                "method": "scikit-image rgb2lab per image in a Dataset (baseline)",
                "images_per_s": batch / base,
                "ratio": 1.0,
                "max_error_lab": 0.0,
            }
        )
        for name, fn in candidates:
            seconds = median_seconds(fn, device, repeats, warmup=1)
            result = fn()
            if isinstance(result, torch.Tensor):  # kornia returns Lab itself
                result = (result[:, :1] / 50.0 - 1.0, result[:, 1:] / 110.0)
            rows.append(
                {
                    "size": size,
                    "batch": batch,
                    "method": name,
                    "images_per_s": batch / seconds,
                    "ratio": base / seconds,
                    "max_error_lab": max_error(*result),
                }
            )
    return rows
