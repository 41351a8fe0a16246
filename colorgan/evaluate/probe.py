"""A small CIFAR-10 classifier that asks whether colorized images are still recognisable.

Zhang et al. (2016) fed colorized ImageNet images to a classifier trained on real colour: the
better the colours, the closer its accuracy gets to that on the real images. This is the same test
for CIFAR-10, with a network small enough to train on a laptop CPU in minutes:

    python -m colorgan.evaluate.probe train [paths.data_dir=...] [probe.weights_path=...] [probe.epochs=...]

The weights file holds only tensors and plain data (``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn

from colorgan.color import rgb_to_lab_normalized
from colorgan.data.cifar10 import CLASS_NAMES, ensure_cifar10, load_cifar10_split
from colorgan.errors import EXIT_USAGE
from colorgan.evaluate.metrics import Rendered
from colorgan.files import UnreadableFile, load_torch_file, save_torch_atomic
from colorgan.output_checks import folder_problem
from colorgan.runtime import pick_device

log = logging.getLogger(__name__)

PROBE_FORMAT = "colorgan-probe/1"
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
TRAIN_COMMAND = "python -m colorgan.evaluate.probe train paths.data_dir=DATA probe.weights_path=PATH"
STEM_WIDTH = 24  # both signs of the 12 whitening filters of 2 x 2 RGB patches


class ProbeError(UnreadableFile):
    """A probe weights file that is missing, unreadable or of the wrong kind."""


def _conv_bn(cin: int, cout: int, pool: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=False)]
    if pool:
        layers.append(nn.MaxPool2d(2))  # pool before BN and activation: same result, a quarter of the work
    return [*layers, nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class ProbeNet(nn.Module):
    """Patch-whitening stem, then three conv-pool-conv stages (32 -> 15 -> 7 -> 3 px) and global max pool.

    The layout of the fast CIFAR-10 training recipes (e.g. Keller Jordan's airbench) at a quarter
    of their widths, so that a few epochs on two CPU cores reach the mid-80s in accuracy.
    """

    def __init__(self, widths: Sequence[int] = (32, 64, 128), num_classes: int = 10) -> None:
        super().__init__()
        if len(widths) != 3:
            raise ValueError(f"probe needs 3 widths, got {list(widths)}")
        self.register_buffer("mean", torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(CIFAR10_STD).view(1, 3, 1, 1) * 255)
        self.stem = nn.Conv2d(3, STEM_WIDTH, 2)
        layers: list[nn.Module] = []
        cin = STEM_WIDTH
        for w in widths:
            layers += _conv_bn(cin, w, pool=True) + _conv_bn(w, w, pool=False)
            cin = w
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(cin, num_classes, bias=False)
        self.widths = [int(w) for w in widths]

    def features(self, rgb: torch.Tensor) -> torch.Tensor:
        """Penultimate features of uint8 (0-255) or float (0-1) RGB, (B, 3, H, W) -> (B, C)."""
        x = rgb.float() if rgb.dtype == torch.uint8 else rgb.float() * 255
        x = F.gelu(self.stem((x - self.mean) / self.std))
        return self.body(x).amax(dim=(2, 3))

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(rgb))

    @torch.no_grad()
    def init_whitening(self, images: torch.Tensor) -> None:
        """Set the 2 x 2 stem to whiten image patches (eigenvectors / sqrt(eigenvalues), both signs).

        Decorrelated inputs let a short schedule converge much faster; the stem's weights then stay
        fixed and only its bias trains.
        """
        x = (images.float() - self.mean.cpu()) / self.std.cpu()
        patches = x.unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 12)
        vals, vecs = torch.linalg.eigh(torch.cov(patches.T.double()))
        filters = (vecs.T / torch.sqrt(vals + 5e-4)[:, None]).flip(0)  # largest variance first
        weight = torch.cat([filters, -filters]).view(-1, 3, 2, 2).float()
        self.stem.weight.copy_(weight.to(self.stem.weight.device))
        self.stem.weight.requires_grad_(False)


def random_translate_flip(images: torch.Tensor, generator: torch.Generator, shift: int = 2) -> torch.Tensor:
    """Per-image random horizontal flip and translation by up to ``shift`` px (reflect padding)."""
    b, _, h, w = images.shape
    flip = torch.rand(b, generator=generator) < 0.5
    images = torch.where(flip.view(b, 1, 1, 1).to(images.device), images.flip(-1), images)
    padded = F.pad(images.float(), (shift,) * 4, mode="reflect").to(images.dtype)
    dy = torch.randint(0, 2 * shift + 1, (b,), generator=generator).to(images.device)
    dx = torch.randint(0, 2 * shift + 1, (b,), generator=generator).to(images.device)
    rows = (dy[:, None] + torch.arange(h, device=images.device))[:, None, :, None].expand(b, 3, h, w + 2 * shift)
    cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, None, :].expand(b, 3, h, w)
    return padded.gather(2, rows).gather(3, cols)


def gray_version(rgb_uint8: torch.Tensor) -> torch.Tensor:
    """The gray baseline image (L kept, ab = 0) as uint8 RGB, exactly as evaluation makes it."""
    return Rendered.gray(rgb_to_lab_normalized(rgb_uint8)[0]).rgb


@torch.inference_mode()
def predict(net: ProbeNet, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Class predictions for uint8 RGB images, in batches, on the network's device."""
    device = next(net.parameters()).device
    net.eval()
    return torch.cat(
        [net(images[i : i + batch_size].to(device)).argmax(1).cpu() for i in range(0, len(images), batch_size)]
    )


def accuracy(net: ProbeNet, images: torch.Tensor, labels: torch.Tensor) -> float:
    return (predict(net, images) == labels).float().mean().item()


def train_probe(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    widths: Sequence[int] = (32, 64, 128),
    num_classes: int = len(CLASS_NAMES),
    epochs: float = 4,
    batch_size: int = 256,
    lr: float = 0.2,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    label_smoothing: float = 0.2,
    warmup: float = 0.15,
    max_steps: int | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> ProbeNet:
    """Train a probe on uint8 RGB ``images`` (N, 3, 32, 32): SGD with Nesterov, linear warm-up then decay."""
    if len(images) < 2:
        raise ValueError(f"the probe needs at least 2 training images, got {len(images)}")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise ValueError(
            f"probe labels must be in [0, {num_classes - 1}], got {int(labels.min())}..{int(labels.max())}"
        )
    net = ProbeNet(widths, num_classes)
    net.init_whitening(images[torch.randperm(len(images), generator=gen)[:1024]])
    net = net.to(device).train()
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=True, weight_decay=weight_decay)
    batch_size = min(batch_size, len(images))
    steps_per_epoch = len(images) // batch_size
    total = max(1, math.ceil(epochs * steps_per_epoch))
    if max_steps is not None:
        total = min(total, max_steps)
    warm = max(1, round(warmup * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / max(1, total - warm))
    )
    step, start = 0, time.time()
    run_loss, run_correct, run_n = 0.0, 0, 0
    while step < total:
        order = torch.randperm(len(images), generator=gen)
        for i in range(steps_per_epoch):
            if step >= total:
                break
            idx = order[i * batch_size : (i + 1) * batch_size]
            x = random_translate_flip(images[idx], gen).to(device)
            y = labels[idx].to(device)
            logits = net(x)
            loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"probe training diverged at step {step} (loss {loss.item()}); lower probe.lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            run_loss += loss.item() * len(idx)
            run_correct += int((logits.argmax(1) == y).sum())
            run_n += len(idx)
            if step % 50 == 0 or step == total:
                elapsed = time.time() - start
                log.info(
                    "probe step %d/%d (epoch %.2f): loss %.3f, train accuracy %.3f, %.0f images/s, %.0f s",
                    step, total, step / steps_per_epoch, run_loss / run_n, run_correct / run_n,
                    step * batch_size / max(elapsed, 1e-9), elapsed,
                )  # fmt: skip
                run_loss, run_correct, run_n = 0.0, 0, 0
    return net.eval()


def save_probe(path: str | Path, net: ProbeNet, class_names: Sequence[str], info: dict[str, Any]) -> Path:
    """Write the probe atomically (temporary file, fsync, rename): a crash never leaves half a file."""
    payload = {
        "format": PROBE_FORMAT,
        "config": {"widths": net.widths, "num_classes": net.head.out_features},
        "class_names": list(class_names),
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "info": info,
    }
    return save_torch_atomic(payload, Path(path).expanduser())


def load_probe(path: str | Path, device: torch.device | str = "cpu") -> tuple[ProbeNet, dict[str, Any]]:
    """A trained probe in eval mode and its metadata (class names, training accuracy, ...)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ProbeError(f"no probe weights at {path}; create them with: {TRAIN_COMMAND}")
    payload = load_torch_file(path, "probe weights file", f"create it again with: {TRAIN_COMMAND}", ProbeError)
    if not isinstance(payload, dict) or payload.get("format") != PROBE_FORMAT:
        raise ProbeError(f"{path} is not a colorgan probe (expected format {PROBE_FORMAT!r}); retrain: {TRAIN_COMMAND}")
    cfg = payload["config"]
    net = ProbeNet(cfg["widths"], cfg["num_classes"])
    try:
        net.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        raise ProbeError(f"probe weights {path} do not fit the probe network ({str(err).splitlines()[0]})") from err
    meta = {k: v for k, v in payload.items() if k != "state_dict"}
    return net.to(device).eval(), meta


def train_from_config(cfg: DictConfig) -> dict[str, Any]:
    """Train on CIFAR-10's training set, score it on the test set in colour and gray, save it."""
    p = cfg.probe
    out = Path(p.weights_path).expanduser()
    problem = folder_problem(out.parent)  # found in a second, not after training
    if problem:
        raise ProbeError(
            f"cannot write the probe weights to {out} ({problem}); set probe.weights_path to a "
            "writable file (the data folder may be read-only)"
        )
    device = pick_device(p.device, key="probe.device")
    ensure_cifar10(cfg.paths.data_dir, p.get("download", True))
    train_x, train_y = load_cifar10_split(cfg.paths.data_dir, "train")
    test_x, test_y = load_cifar10_split(cfg.paths.data_dir, "test")
    if p.get("limit_train"):
        train_x, train_y = train_x[: p.limit_train], train_y[: p.limit_train]
    log.info("training the probe on %d images for %s epochs on %s", len(train_x), p.epochs, device)
    start = time.time()
    net = train_probe(
        train_x, train_y, widths=list(p.widths), epochs=p.epochs, batch_size=p.batch_size, lr=p.lr,
        momentum=p.momentum, weight_decay=p.weight_decay, label_smoothing=p.label_smoothing, warmup=p.warmup,
        max_steps=p.get("max_steps"), seed=p.seed, device=device,
    )  # fmt: skip
    train_seconds = time.time() - start
    info = {
        "train_images": len(train_x),
        "epochs": float(p.epochs),
        "max_steps": p.get("max_steps"),
        "train_seconds": round(train_seconds, 1),
        "test_images": len(test_x),
        "test_accuracy": accuracy(net, test_x, test_y),
        "test_accuracy_gray": accuracy(net, gray_version(test_x), test_y),
        "hyperparameters": OmegaConf.to_container(p, resolve=True),
    }
    save_probe(out, net, CLASS_NAMES, info)
    log.info(
        "probe: test accuracy %.4f on colour, %.4f on gray (%d images); %.0f s training; written to %s",
        info["test_accuracy"], info["test_accuracy_gray"], len(test_x), train_seconds, out,
    )  # fmt: skip
    return {**info, "weights_path": str(out)}


USAGE = (
    "usage: python -m colorgan.evaluate.probe train [paths.data_dir=DATA] [probe.weights_path=PATH] [probe.epochs=N]"
)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "train":
        print(USAGE, file=sys.stderr)
        raise SystemExit(EXIT_USAGE)
    os.environ.setdefault("COLORGAN_ROOT", str(Path(__file__).resolve().parents[2]))
    import hydra

    @hydra.main(version_base="1.3", config_path="../../conf", config_name="probe.yaml")
    def _train(cfg: DictConfig) -> None:
        train_from_config(cfg)

    sys.argv = [sys.argv[0], *argv[1:]]
    _train()


if __name__ == "__main__":
    main()
