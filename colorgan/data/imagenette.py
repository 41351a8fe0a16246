"""Imagenette (the public 10-class ImageNet subset): a local folder, or fetched through torchvision once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from colorgan.data.cifar10 import DataNotFoundError, download_or_explain
from colorgan.data.folder import FolderDataModule

# The folder each torchvision archive extracts to under its root (torchvision names it after the archive).
EXTRACTED_FOLDERS = {"full": "imagenette2", "320px": "imagenette2-320", "160px": "imagenette2-160"}


def imagenette_dir(data_dir: str | Path) -> Path:
    return Path(data_dir).expanduser() / "imagenette"


def find_imagenette(data_dir: str | Path, size: str) -> Path | None:
    """The folder holding ``train/<wnid>/`` (and ``val/<wnid>/``): ``<data_dir>/imagenette`` itself when
    it is laid out so, else the folder torchvision extracted ``size`` to inside it; None when neither is."""
    folder = imagenette_dir(data_dir)
    for candidate in (folder, folder / EXTRACTED_FOLDERS[size]):
        train = candidate / "train"
        if train.is_dir() and any(child.is_dir() for child in train.iterdir()):  # train/<wnid>/
            return candidate
    return None


def _download_with_torchvision(folder: Path, size: str) -> None:
    """Fetch and extract the ``size`` archive into ``folder`` (torchvision skips it when already extracted)."""
    import torchvision

    for split in ("train", "val"):
        torchvision.datasets.Imagenette(root=str(folder), split=split, size=size, download=True)


def ensure_imagenette(data_dir: str | Path, size: str = "320px", download: bool = True) -> Path:
    """Return the folder holding ``train/`` and ``val/`` of Imagenette, downloading it if allowed."""
    found = find_imagenette(data_dir, size)
    if found is not None:
        return found
    folder = imagenette_dir(data_dir)
    fixes = (
        f"Fix: put a folder with train/<wnid>/ and val/<wnid>/ sub-folders of images at {folder} (e.g. "
        f"downloaded elsewhere and copied here), or point paths.data_dir (or COLORGAN_DATA_DIR) at a folder "
        "whose imagenette/ holds them, or run once with internet access and data.download=true so torchvision "
        f"downloads Imagenette ({size}) into {folder / EXTRACTED_FOLDERS[size]}"
    )
    download_or_explain("Imagenette", folder, download, fixes, lambda: _download_with_torchvision(folder, size))
    found = find_imagenette(data_dir, size)
    if found is None:
        raise DataNotFoundError(f"the Imagenette download left no train/<wnid>/ folders under {folder}. {fixes}")
    return found


class ImagenetteDataModule(FolderDataModule):
    """Imagenette read as a photo folder: ``train/`` trains, ``val/`` (the official val) selects checkpoints,
    and test is carved out of ``train/`` by the seeded hash of ``FolderDataModule``.

    The folder is found (or downloaded) the first time splits are needed, so building the module reads nothing.
    """

    def __init__(
        self,
        data_dir: str = "data",
        size: str = "320px",
        download: bool = True,
        **folder_kwargs: Any,
    ) -> None:
        if size not in EXTRACTED_FOLDERS:
            raise ValueError(f"data.size must be one of {', '.join(EXTRACTED_FOLDERS)}, got {size!r}")
        super().__init__(root=str(imagenette_dir(data_dir)), **folder_kwargs)
        self.data_dir = data_dir
        self.size = size
        self.download = download

    def prepare_data(self) -> None:
        ensure_imagenette(self.data_dir, self.size, self.download)

    def split_files(self) -> dict[str, list[Path]]:
        if self._splits is None:
            self.root = ensure_imagenette(self.data_dir, self.size, self.download)
        return super().split_files()

    def split_description(self, split: str = "test") -> str:
        return f"{super().split_description(split)}, Imagenette in {self.root}"
