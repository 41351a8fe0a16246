"""Data sets and data modules; every data set yields uint8 RGB."""

from colorgan.data.cifar10 import DataNotFoundError
from colorgan.data.cifar10_datamodule import CIFAR10DataModule
from colorgan.data.datamodule import ColorizationDataModule
from colorgan.data.folder import FolderDataModule
from colorgan.data.imagenette import ImagenetteDataModule
from colorgan.data.images import BadImageError, load_image, load_rgb

__all__ = [
    "BadImageError",
    "CIFAR10DataModule",
    "ColorizationDataModule",
    "DataNotFoundError",
    "FolderDataModule",
    "ImagenetteDataModule",
    "load_image",
    "load_rgb",
]
