"""Reading and writing checkpoints safely: atomic writes, no pickled code on load, clear errors."""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from torch import nn

from colorgan.models import build_generator, set_stochastic_inference

# Lightning's own names for ``trainer.fit(ckpt_path=...)``, resolved by Lightning itself.
LIGHTNING_CKPT_KEYWORDS = ("last", "best", "hpc", "registry")


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable, unsafe or of the wrong kind."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write to a temporary file in the same folder, fsync, then rename into place; load safely.

    Lightning's own save writes the destination directly, so a run killed while saving
    ``last.ckpt`` destroys the previous one. A rename within a folder is atomic on POSIX. Loading
    (resuming with ``ckpt_path``) goes through :func:`load_checkpoint`: ``weights_only=True``
    whatever the caller or ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` asks, and the same clear errors.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        path = atomic_torch_save(checkpoint, path)
        _fsync_dir(path.parent)
        _remove_stale_tmp_files(path)

    def load_checkpoint(
        self,
        path: Any,
        map_location: Callable | str | torch.device | None = "cpu",
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        return load_checkpoint(path, map_location=map_location)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (a power cut right after could otherwise undo it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_stale_tmp_files(path: Path) -> None:
    """Delete ``.NAME.PID.tmp`` left by a process killed while saving, once that process is gone."""
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(\d+)\.tmp$")
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        match = pattern.match(tmp.name)
        if match and int(match.group(1)) != os.getpid() and not _pid_alive(int(match.group(1))):
            tmp.unlink(missing_ok=True)


def load_checkpoint(path: str | Path, map_location: Callable | str | torch.device | None = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``: tensors and plain data only, never code."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass the path of a .ckpt file from a training run")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes); use another checkpoint, e.g. an earlier epoch")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"refused to load {path}: it holds objects other than tensors and plain data, which could run "
            f"code when unpickled ({str(err).splitlines()[0]}). Only load checkpoints written by colorgan."
        ) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt ({type(err).__name__}: {str(err).splitlines()[0]}); "
            "use another checkpoint, e.g. last.ckpt or an earlier epoch"
        ) from err
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(ckpt).__name__}, not a colorgan checkpoint")
    return ckpt


def generator_state(ckpt: dict[str, Any], path: str | Path) -> dict[str, torch.Tensor]:
    """The generator's weights from a Lightning checkpoint (keys ``generator.*``)."""
    state = ckpt.get("state_dict", {})
    prefix = "generator."
    weights = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)} if isinstance(state, dict) else {}
    if not weights:
        raise CheckpointError(
            f"checkpoint {path} holds no generator weights (no 'generator.*' keys in its state_dict); "
            "pass a checkpoint written by colorgan's train.py"
        )
    return weights


def generator_config(ckpt: dict[str, Any], path: str | Path) -> dict[str, Any]:
    hparams = ckpt.get("hyper_parameters") or {}
    cfg = hparams.get("generator") if isinstance(hparams, dict) else None
    if not isinstance(cfg, dict) or "name" not in cfg:
        raise CheckpointError(f"checkpoint {path} does not say which generator it holds (hyper_parameters.generator)")
    return dict(cfg)


def _load_weights(
    generator: nn.Module, weights: dict[str, torch.Tensor], path: str | Path, against: str, fix: str
) -> None:
    try:
        generator.load_state_dict(weights)
    except RuntimeError as err:
        raise CheckpointError(
            f"the generator in {path} does not match {against} ({_first_problem(err)}); {fix}"
        ) from err


def _first_problem(err: RuntimeError) -> str:
    """The first line of PyTorch's load_state_dict report, which can run to thousands of keys."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    detail = lines[1] if len(lines) > 1 else lines[0] if lines else type(err).__name__
    return detail if len(detail) < 300 else detail[:300] + " ..."


def widen_for_noise_inputs(weights: dict[str, torch.Tensor], generator: nn.Module) -> dict[str, torch.Tensor]:
    """Give a generator trained on L alone the input filters of extra noise channels, set to zero.

    So ``model.init_from`` can start a ``model.generator.noise_channels`` run from an L1-pretrained
    generator: at first it computes exactly what it was given and ignores z; training decides
    whether z gets used.
    """
    target = generator.state_dict()
    widened = dict(weights)
    for key, value in weights.items():
        want = target.get(key)
        if want is None or value.dim() != 4 or want.shape == value.shape:
            continue
        if want.shape[0] == value.shape[0] and want.shape[2:] == value.shape[2:] and want.shape[1] > value.shape[1]:
            extra = value.new_zeros((value.shape[0], want.shape[1] - value.shape[1], *value.shape[2:]))
            widened[key] = torch.cat([value, extra], dim=1)
    return widened


def load_generator_weights(generator: nn.Module, path: str | Path) -> None:
    """``model.init_from``: copy a checkpoint's generator into ``generator`` (weights only)."""
    ckpt = load_checkpoint(path)
    weights = generator_state(ckpt, path)
    if getattr(generator, "noise_channels", 0):
        weights = widen_for_noise_inputs(weights, generator)
    _load_weights(
        generator,
        weights,
        path,
        "model.generator",
        "use the same model.generator settings as the run that wrote it",
    )


def load_generator(
    path: str | Path, device: str | torch.device = "cpu", stochastic: bool | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a trained generator for inference from its checkpoint alone, in eval mode.

    ``stochastic`` (None: the run's ``model.stochastic_inference``, off if unset) keeps dropout and
    noise inputs random, as pix2pix does at test time; off, every call gives the same colours.
    """
    ckpt = load_checkpoint(path)
    cfg = generator_config(ckpt, path)
    if "pretrained" in cfg:
        cfg["pretrained"] = False  # the checkpoint has the weights; never fetch ImageNet ones
    try:
        generator = build_generator(cfg)
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"checkpoint {path} describes a generator colorgan cannot build ({err})") from err
    _load_weights(
        generator, generator_state(ckpt, path), path, "its own hyper_parameters.generator", "the file is damaged"
    )
    hparams = ckpt.get("hyper_parameters", {})
    if stochastic is None:
        stochastic = bool(hparams.get("stochastic_inference", False))
    return set_stochastic_inference(generator.to(device), stochastic), hparams


def check_resume_checkpoint(path: str | Path, model: nn.Module) -> None:
    """Before ``trainer.fit(ckpt_path=...)``: a safe, complete checkpoint of this very model.

    Lightning would fail later, mid-restore, with a list of every mismatched key; this names
    the file, says what differs and what to do instead.
    """
    if str(path) in LIGHTNING_CKPT_KEYWORDS:
        return
    ckpt = load_checkpoint(path)
    state = ckpt.get("state_dict")
    if not isinstance(state, dict) or "optimizer_states" not in ckpt or "loops" not in ckpt:
        raise CheckpointError(
            f"checkpoint {path} is not a full training checkpoint (it lacks state_dict, optimizer_states or loops), "
            "so the run cannot resume from it; use model.init_from=PATH to start from its generator instead"
        )
    plain = lambda key: key.replace("._orig_mod", "")  # torch.compile's wrapper adds this to names
    expected = {plain(k): tuple(v.shape) for k, v in model.state_dict().items()}
    found = {plain(k): tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
    missing, unexpected = sorted(expected.keys() - found.keys()), sorted(found.keys() - expected.keys())
    reshaped = sorted(k for k in expected.keys() & found.keys() if expected[k] != found[k])
    if missing or unexpected or reshaped:
        details = [
            f"{label} {len(keys)} (e.g. {keys[0]})"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("other shapes", reshaped))
            if keys
        ]
        raise CheckpointError(
            f"checkpoint {path} was written by a different model ({'; '.join(details)}); resume with the same "
            "experiment and model settings as the run that wrote it, or use model.init_from=PATH to start a new "
            "run from its generator"
        )
