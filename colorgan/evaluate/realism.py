"""A cheap, every-epoch measure of how real the colours look: what picks a GAN stage's checkpoint.

L1 ranks the blandest generator best, so the GAN stage is judged by realism instead:

* ``fid_probe``: the Frechet distance between the validation images' and the colorized images'
  features in the CIFAR-10 probe classifier (``python -m colorgan.evaluate.probe train``). Wrong or missing
  colours move the features a classifier relies on; about a second per epoch on CIFAR-10.
* ``delta_cf``: the mean per-image gap in colourfulness (Hasler and Suesstrunk) to the truth;
  needs no network, so it works for any data, but it cannot tell a green cat from a brown one.

``auto`` takes ``fid_probe`` where a probe file is configured and present, else ``delta_cf``. The
PSNR guard (``val/psnr_gain`` >= 0, see :class:`colorgan.train.callbacks.GuardedModelCheckpoint`) keeps
a checkpoint from winning on vivid but wrong colours.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from colorgan.evaluate.fid import FeatureStats, frechet_distance_stats
from colorgan.evaluate.metrics import Rendered
from colorgan.evaluate.probe import TRAIN_COMMAND, ProbeError, ProbeNet, load_probe

log = logging.getLogger(__name__)

REALISM_METRICS = ("fid_probe", "delta_cf")


class RealismScore:
    """Accumulates validation batches and reports ``val/realism`` (lower is more real).

    Not an ``nn.Module`` on purpose: the probe must not enter the model's checkpoints. Under DDP
    each rank scores its own share of the validation set.
    """

    def __init__(self, metric: str = "auto", probe_path: str | Path | None = None) -> None:
        self.requested, self.probe_path = metric, probe_path
        self.probe: ProbeNet | None = None
        self.reset()

    def setup(self, device: torch.device) -> None:
        """Load the probe if the metric needs it; decide what ``auto`` means for this run."""
        wants_probe = self.requested in ("auto", "fid_probe")
        if wants_probe and self.probe_path and Path(self.probe_path).expanduser().is_file():
            self.probe = load_probe(self.probe_path, device)[0]
        elif self.requested == "fid_probe":
            raise ProbeError(
                f"model.realism_metric=fid_probe needs the CIFAR-10 probe, but model.realism_probe={self.probe_path} "
                f"is not a file; create it with: {TRAIN_COMMAND}, or set model.realism_metric=delta_cf"
            )
        log.info("val/realism is %s", "delta_cf" if self.probe is None else "fid_probe")

    def reset(self) -> None:
        self.pred, self.truth = FeatureStats(), FeatureStats()

    @torch.no_grad()
    def update(self, pred: Rendered, truth: Rendered) -> None:
        if self.probe is None:
            return
        with torch.autocast(device_type=pred.rgb.device.type, enabled=False):  # as evaluate.py: float32
            self.pred.update(self.probe.features(pred.rgb))
            self.truth.update(self.probe.features(truth.rgb))

    def compute(self, metrics: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``val/realism`` (and ``val/fid_probe``) from this epoch's batches and the per-image means."""
        if self.probe is None or self.truth.n < 2:
            return {"val/realism": metrics["val/delta_cf"]}
        fid = torch.tensor(frechet_distance_stats(self.truth, self.pred), dtype=torch.float32)
        return {"val/fid_probe": fid, "val/realism": fid}
