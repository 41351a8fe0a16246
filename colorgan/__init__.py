"""colorgan: conditional-GAN image colorization (pix2pix in CIE Lab) on PyTorch Lightning."""

__version__ = "0.1.0"
