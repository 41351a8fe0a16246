"""What the command-line programs share: the model flags, the side a model works at, and one way to load it.

``--ckpt`` takes a checkpoint written by train.py, a model folder, or a shipped model's name; ``--device``
picks where it runs; ``--size`` overrides the side the model works at, which is otherwise the size it
was trained at (:func:`colorgan.checkpoint.trained_size`). Failures follow :mod:`colorgan.errors`.
"""

from __future__ import annotations

import argparse
from typing import Any

from torch import nn

from colorgan.checkpoint import load_generator, trained_size
from colorgan.errors import ColorganError
from colorgan.inference import MAX_SIZE, MIN_SIZE
from colorgan.model_folder import shipped_models
from colorgan.runtime import pick_device

SHIPPED = ", ".join(shipped_models()) or "none installed"


class ArgumentError(ColorganError, ValueError):
    """An option whose value cannot work (out of range, or missing where the model cannot supply it)."""


def add_model_arguments(parser: argparse.ArgumentParser, ckpt_default: str | None = None, device: bool = True) -> None:
    """--ckpt, --size and (for programs that run the model) --device, said the same way everywhere."""
    what = f"a checkpoint written by train.py, a model folder, or a shipped model: {SHIPPED}"
    if ckpt_default is None:
        parser.add_argument("--ckpt", required=True, help=what)
    else:
        parser.add_argument("--ckpt", default=ckpt_default, help=f"{what} (default {ckpt_default})")
    side = f"side the model works at, {MIN_SIZE}..{MAX_SIZE} (default: its training size)"
    parser.add_argument("--size", type=int, default=None, help=side)
    if device:
        parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda or cuda:N")


def size_problem(size: object, where: str) -> str | None:
    """Why ``size`` (given by ``where``: --size, or a checkpoint) cannot be the side the model works at."""
    if isinstance(size, int) and not isinstance(size, bool) and MIN_SIZE <= size <= MAX_SIZE:
        return None
    return (
        f"{where} gives a model side of {size} pixels; it must be {MIN_SIZE}..{MAX_SIZE} (smaller runs a window "
        f"every few pixels, larger needs gigabytes per batch): pass --size, usually the model's training size"
    )


def check_size_option(size: int | None) -> None:
    """--size, when given, is in range: checked before anything is loaded."""
    if size is not None and (problem := size_problem(size, "--size")):
        raise ArgumentError(problem)


def working_size(ckpt: str, hparams: dict[str, Any], size: int | None = None) -> int:
    """--size if given, else the size ``ckpt`` was trained at; a clear error when neither is usable."""
    if size is not None:
        check_size_option(size)
        return size
    trained = trained_size(hparams)
    if trained is None:
        raise ArgumentError(f"{ckpt} does not record its training size; pass --size")
    if problem := size_problem(trained, f"{ckpt} (its training size)"):
        raise ArgumentError(problem)
    return trained


def load_model(args: argparse.Namespace, **load_kwargs: Any) -> tuple[nn.Module, dict[str, Any], int]:
    """The generator of --ckpt on --device, its hyperparameters and the side it works at (--size or trained)."""
    generator, hparams = load_generator(args.ckpt, pick_device(args.device), **load_kwargs)
    return generator, hparams, working_size(args.ckpt, hparams, args.size)
