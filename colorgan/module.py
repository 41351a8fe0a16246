"""The LightningModule: pix2pix's alternating D and G steps, with manual optimization."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torchmetrics import MeanMetric

from colorgan.buffers import BufferSnapshot, running_stats_frozen
from colorgan.checkpoint import load_generator_weights
from colorgan.losses import GANLoss
from colorgan.metrics import PER_IMAGE_METRICS, Rendered
from colorgan.models import build_discriminator, build_generator, set_stochastic_inference
from colorgan.realism import REALISM_METRICS, RealismScore
from colorgan.visualize import make_grid, save_image_atomic

log = logging.getLogger(__name__)


# The reconstruction term weighted by lambda_l1: pix2pix's L1 (the median colour: sharper, more
# saturated), or L2 (the mean colour: what PSNR rewards, more desaturated).
RECON_LOSSES = {"l1": F.l1_loss, "l2": F.mse_loss}


class NonFiniteLossError(RuntimeError):
    """Too many optimizer steps in a row had a NaN or infinite loss."""


class LinearDecay:
    """pix2pix's schedule, counted in batches: constant lr until ``decay_start``, then linear decay.

    Two differences from pix2pix's ``1 - max(0, e + 1 - n) / (n_decay + 1)`` per epoch ``e``:
    it is stepped per batch, which gives the same curve for long runs and a real decay for short
    ones (a one-epoch run anneals over its second half instead of ending at the full rate); and the
    first decayed batch still has the full rate, the last ``1 / (total - decay_start)`` (pix2pix:
    ``1 - 1 / (n_decay + 1)`` in its first decayed epoch, ``1 / (n_decay + 1)`` in its last).
    """

    def __init__(self, decay_start: int, total: int) -> None:
        self.decay_start, self.total = decay_start, total

    def __call__(self, step: int) -> float:
        if self.total <= 0 or self.decay_start >= self.total:
            return 1.0
        return max(0.0, 1.0 - max(0, step - self.decay_start) / float(self.total - self.decay_start))


class ColorizationModule(LightningModule):
    """Generator (L -> ab) and, when ``discriminator`` is given, a conditional PatchGAN.

    Per batch: ``fake = G(L)`` once; a D step on (L, ab) against (L, fake.detach()); then a G step
    on ``lambda_gan * gan + lambda_l1 * |fake - ab|``. Without a discriminator (pretraining,
    ``model/discriminator=none``) the stage is plain L1 regression. Lightning's global_step
    counts optimizer steps, i.e. two per batch in the GAN stage.
    """

    def __init__(
        self,
        generator: dict[str, Any],
        discriminator: dict[str, Any] | None = None,
        lambda_l1: float = 100.0,
        lambda_gan: float = 1.0,
        gan_mode: str = "vanilla",
        lr: float = 2e-4,
        lr_d: float | None = None,
        betas: tuple[float, float] = (0.5, 0.999),
        lr_decay_start_epoch: int | None = None,
        gradient_clip_val: float | None = None,
        init_from: str | None = None,
        max_bad_steps: int = 10,
        num_samples: int = 8,
        channels_last: bool = False,
        compile: bool = False,
        stochastic_inference: bool = False,
        realism_metric: str = "auto",
        realism_probe: str | None = None,
        recon_loss: str = "l1",
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)  # the full Hydra config is logged instead
        self.automatic_optimization = False
        self.generator = build_generator(generator)
        self.discriminator = build_discriminator(discriminator) if discriminator is not None else None
        self.gan_loss = GANLoss(gan_mode)
        if recon_loss not in RECON_LOSSES:
            raise ValueError(f"model.recon_loss must be one of {sorted(RECON_LOSSES)}, got {recon_loss!r}")
        self.recon_loss = RECON_LOSSES[recon_loss]
        # val/<name>: the per-image metrics of evaluate.py, on the same rendered uint8 pictures
        self.val_metrics = torch.nn.ModuleDict({name: MeanMetric() for name in PER_IMAGE_METRICS})
        self.val_psnr_gray = MeanMetric()  # the gray baseline on the same images: the PSNR guard's bar
        if realism_metric not in ("auto", *REALISM_METRICS):
            raise ValueError(f"model.realism_metric must be auto or one of {REALISM_METRICS}, got {realism_metric!r}")
        self.realism = RealismScore(realism_metric, realism_probe)
        self.bad_steps_in_a_row = 0
        self._g_buffers, self._d_buffers = BufferSnapshot(), BufferSnapshot()
        self._samples: tuple[torch.Tensor, ...] | None = None

    # ----------------------------------------------------------------- set-up
    def setup(self, stage: str) -> None:
        if stage == "fit" and self.hparams.init_from:
            load_generator_weights(self.generator, self.hparams.init_from)
            log.info("generator initialised from %s", self.hparams.init_from)
        for net in (self.generator, self.discriminator):
            if net is None:
                continue
            if self.hparams.channels_last:  # NHWC: faster convolutions with oneDNN and cuDNN
                net.to(memory_format=torch.channels_last)
            if self.hparams.compile and stage == "fit":
                net.compile()  # in place: parameter names, and so checkpoints, stay the same

    def _memory_format(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.hparams.channels_last else x

    def forward(self, L: torch.Tensor) -> torch.Tensor:
        return self.generator(L)

    def configure_optimizers(self) -> Any:
        betas = tuple(self.hparams.betas)

        def adam(net: torch.nn.Module, lr: float) -> torch.optim.Adam:
            # the fused kernel is one pass over the weights: 5x faster than foreach on CPU (0.03 vs
            # 0.17 s for the 54M-parameter U-Net 256), a few % of a CIFAR step. Lightning's mixed
            # precision cannot clip the gradients of a fused optimizer, so clipping keeps foreach.
            fused = not self.hparams.gradient_clip_val and all(
                p.device.type in ("cpu", "cuda") for p in net.parameters()
            )
            return torch.optim.Adam(net.parameters(), lr=lr, betas=betas, fused=fused or None)

        optimizers = [adam(self.generator, self.hparams.lr)]
        if self.discriminator is not None:
            optimizers.append(adam(self.discriminator, self.hparams.lr_d or self.hparams.lr))
        total, per_epoch = self._planned_batches(len(optimizers))
        start = self.hparams.lr_decay_start_epoch
        rule = LinearDecay(total // 2 if start is None else round(start * per_epoch), total)

        def factor(batch: int) -> float:
            # A plain function, not the LinearDecay object: LambdaLR saves (and a resume restores) the
            # attributes of a callable object, which would bring back the old run's length; a function
            # is not saved, so a resume follows this run's length (pix2pix's --continue_train).
            return rule(batch)

        names = ["lr/generator", "lr/discriminator"]
        schedulers = [
            {"scheduler": torch.optim.lr_scheduler.LambdaLR(opt, factor), "name": name}
            for opt, name in zip(optimizers, names)
        ]
        return optimizers, schedulers

    def on_train_start(self) -> None:
        """Set each optimizer's rate from its schedule at the restored batch count.

        A resume restores the optimizers' last rates (0 at the end of a finished run) and the
        schedulers' counts; the new run's schedule takes over only at its next step, so without this
        the first resumed batch would still train at the old run's final rate.
        """
        schedulers = self.lr_schedulers()
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers] if schedulers else []:
            rates = [base * fn(scheduler.last_epoch) for base, fn in zip(scheduler.base_lrs, scheduler.lr_lambdas)]
            for group, lr in zip(scheduler.optimizer.param_groups, rates):
                group["lr"] = lr
            scheduler._last_lr = rates

    def _planned_batches(self, optimizers_per_batch: int) -> tuple[int, float]:
        """Training batches the run will see in all, and per epoch; (0, 0) when open-ended.

        ``max_steps`` counts optimizer steps, and the GAN stage takes two per batch.
        """
        trainer = self.trainer
        total = trainer.estimated_stepping_batches
        if trainer.max_steps is not None and trainer.max_steps > 0:
            total = min(total, trainer.max_steps // optimizers_per_batch)
        if not np.isfinite(total) or total <= 0:
            return 0, 0.0
        epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else 1
        return int(total), total / epochs

    # --------------------------------------------------------------- training
    def _optimizer_step(self, optimizer: Any, loss: torch.Tensor) -> bool:
        """Backward and step unless the loss is non-finite on any rank (clipping: on_before_optimizer_step)."""
        finite = self.trainer.strategy.reduce_boolean_decision(bool(torch.isfinite(loss.detach())), all=True)
        if not finite:
            return False
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        optimizer.step()
        return True

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Clip here, inside ``optimizer.step()``: under 16-mixed Lightning has just unscaled the gradients.

        Clipping before the step would see loss-scaled gradients, and unscaling them ourselves makes
        Lightning's own ``unscale_`` in the step raise (it may only run once per step).
        """
        if self.hparams.gradient_clip_val:
            self.clip_gradients(optimizer, self.hparams.gradient_clip_val, "norm")

    def _count_bad_step(self, name: str, loss: torch.Tensor, buffers: BufferSnapshot) -> None:
        buffers.restore()  # this network's forward passes moved its BatchNorm statistics (to NaN); the other's stay
        self.bad_steps_in_a_row += 1
        log.warning("non-finite %s loss (%s) at step %d: step skipped", name, loss.item(), self.global_step)
        if self.bad_steps_in_a_row >= self.hparams.max_bad_steps:
            self._g_buffers.restore()  # G's step will not happen either: undo its forward pass too
            raise NonFiniteLossError(
                f"{self.bad_steps_in_a_row} optimizer steps in a row had a non-finite loss (last: {name} = "
                f"{loss.item()}); stopping. The last good checkpoint is intact. Try a lower model.lr, "
                "model.gradient_clip_val=1.0, or trainer.precision=32-true, and check the data for bad images."
            )

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        L, ab = self._memory_format(batch["L"]), self._memory_format(batch["ab"])
        optimizers = self.optimizers()
        opt_g = optimizers[0] if isinstance(optimizers, list) else optimizers
        self._g_buffers.take(self.generator)
        if self.discriminator is not None:
            self._d_buffers.take(self.discriminator)
        fake = self.generator(L)
        logs: dict[str, torch.Tensor] = {}
        all_good = True

        if self.discriminator is not None:
            opt_d = optimizers[1]
            with self.toggled_optimizer(opt_d):
                d_loss, d_real, d_fake = self.gan_loss.discriminator(
                    self.discriminator(L, ab), self.discriminator(L, fake.detach())
                )
                if not self._optimizer_step(opt_d, d_loss):
                    all_good = False
                    self._count_bad_step("discriminator", d_loss, self._d_buffers)
            logs.update({"train/d_loss": d_loss, "train/d_real": d_real, "train/d_fake": d_fake})

        with self.toggled_optimizer(opt_g):
            g_l1 = F.l1_loss(fake.float(), ab)
            if self.discriminator is not None:
                with running_stats_frozen(self.discriminator):  # D's statistics are D's step's
                    g_gan = self.gan_loss.generator(self.discriminator(L, fake))
            else:
                g_gan = torch.zeros((), device=L.device)
            g_rec = g_l1 if self.recon_loss is F.l1_loss else self.recon_loss(fake.float(), ab)
            g_loss = self.hparams.lambda_gan * g_gan + self.hparams.lambda_l1 * g_rec
            if not self._optimizer_step(opt_g, g_loss):
                all_good = False
                self._count_bad_step("generator", g_loss, self._g_buffers)
        if all_good:
            self.bad_steps_in_a_row = 0
        self._step_schedulers()
        logs.update({"train/g_loss": g_loss, "train/g_l1": g_l1, "train/g_gan": g_gan})
        self.log_dict({k: v.detach() for k, v in logs.items()}, on_step=True, on_epoch=True, batch_size=len(L))
        self.log("train/bad_steps", float(self.bad_steps_in_a_row), on_step=True, on_epoch=False, batch_size=len(L))

    def _step_schedulers(self) -> None:
        schedulers = self.lr_schedulers()
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
            scheduler.step()

    # ------------------------------------------------------------- validation
    def on_validation_model_eval(self) -> None:
        super().on_validation_model_eval()
        set_stochastic_inference(self.generator, self.hparams.stochastic_inference)  # as evaluate.py and colorize

    def on_fit_start(self) -> None:
        self.realism.setup(self.device)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        L, ab = batch["L"], batch["ab"]
        fake = self.generator(self._memory_format(L)).float()
        pred, truth = Rendered.from_lab(L, fake), Rendered(batch["rgb"], ab)
        for name, score in PER_IMAGE_METRICS.items():
            self.val_metrics[name].update(score(pred, truth))
        gray = Rendered.from_lab(L, torch.zeros_like(ab))
        self.val_psnr_gray.update(PER_IMAGE_METRICS["psnr"](gray, truth))
        self.realism.update(pred, truth)
        if batch_idx == 0:
            n = self.hparams.num_samples
            self._samples = (gray.rgb[:n].cpu(), pred.rgb[:n].cpu(), truth.rgb[:n].cpu())

    def on_validation_epoch_end(self) -> None:
        metrics = {f"val/{name}": metric.compute() for name, metric in self.val_metrics.items()}
        metrics["val/psnr_gain"] = metrics["val/psnr"] - self.val_psnr_gray.compute()  # over the gray baseline
        metrics.update(self.realism.compute(metrics))
        for name, value in metrics.items():
            self.log(name, value, prog_bar=name in ("val/l1_ab", "val/psnr", "val/realism"))
        for metric in (*self.val_metrics.values(), self.val_psnr_gray):
            metric.reset()
        self.realism.reset()
        if self._samples is not None and not self.trainer.sanity_checking and self.trainer.is_global_zero:
            self._save_samples(*self._samples)

    def _save_samples(self, gray: torch.Tensor, colorized: torch.Tensor, truth: torch.Tensor) -> None:
        """The grid of uint8 pictures validation scored: gray | colorized | truth."""
        grid = make_grid(
            [
                (title, rgb.float() / 255.0)
                for title, rgb in zip(("gray", "colorized", "truth"), (gray, colorized, truth))
            ]
        )
        path = save_image_atomic(
            grid, Path(self.trainer.default_root_dir) / "samples" / f"epoch_{self.current_epoch:03d}.png"
        )
        # the step Lightning logs metrics at (batches); global_step counts both optimizers' steps
        step = self.trainer.fit_loop.epoch_loop._batches_that_stepped
        for logger in self.loggers:
            log_image = getattr(logger, "log_image", None)
            if callable(log_image):  # W&B
                log_image(
                    key="val/samples",
                    images=[grid],
                    caption=[f"epoch {self.current_epoch}: gray | colorized | truth"],
                    step=step,
                )
            elif hasattr(getattr(logger, "experiment", None), "add_image"):  # TensorBoard
                tensor = torch.from_numpy(np.asarray(grid)).permute(2, 0, 1)
                logger.experiment.add_image("val/samples", tensor, step)
        log.info("samples written to %s", path)

    @property
    def has_discriminator(self) -> bool:
        return self.discriminator is not None
