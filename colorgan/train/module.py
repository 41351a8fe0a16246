"""The LightningModule: pix2pix's alternating D and G steps, with manual optimization, and validation scores."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torchmetrics import MeanMetric

from colorgan.checkpoint import load_generator_weights
from colorgan.color import rgb_to_lab_normalized
from colorgan.errors import ColorganError
from colorgan.evaluate.metrics import PER_IMAGE_METRICS, Rendered
from colorgan.evaluate.realism import REALISM_METRICS, RealismScore
from colorgan.models import ColorBinsGenerator, build_discriminator, build_generator, set_stochastic_inference
from colorgan.train.batchnorm import BatchNormSnapshot, running_stats_frozen
from colorgan.train.ema import GeneratorEMA
from colorgan.train.losses import RECON_LOSSES, ColorBinLoss, GANLoss

log = logging.getLogger(__name__)


PRIOR_IMAGES = 20_000  # training images whose colours make the rebalancing prior (Zhang et al. use all of ImageNet's)


class NonFiniteLossError(ColorganError, RuntimeError):
    """Too many optimizer steps in a row had a NaN or infinite loss."""


class LinearDecay:
    """pix2pix's schedule, counted in batches: constant lr until ``decay_start``, then linear decay.

    pix2pix steps it per epoch; per batch gives the same curve for long runs and a real decay for
    short ones (a one-epoch run anneals over its second half instead of ending at the full rate).
    """

    def __init__(self, decay_start: int, total: int) -> None:
        self.decay_start, self.total = decay_start, total

    def __call__(self, step: int) -> float:
        if self.total <= 0 or self.decay_start >= self.total:
            return 1.0
        return max(0.0, 1.0 - max(0, step - self.decay_start) / float(self.total - self.decay_start))


class ColorizationModule(LightningModule):
    """Generator (L -> ab) and, when ``discriminator`` is given, a conditional PatchGAN.

    Per batch, pix2pix's ``optimize_parameters``: ``fake = G(L)`` once, a D step, then a G step.
    Without a discriminator (pretraining, ``model/discriminator=none``) the stage is plain L1 (or L2)
    regression. Lightning's global_step counts optimizer steps, i.e. two per batch in the GAN stage.
    Sample grids, speed and checkpoints are callbacks (colorgan/train/callbacks.py).
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
        ema_decay: float | None = None,
        rebalance: float = 0.5,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)  # the full Hydra config is logged instead
        self.automatic_optimization = False
        self.generator = build_generator(generator)
        self.discriminator = build_discriminator(discriminator) if discriminator is not None else None
        self.generator_ema = GeneratorEMA(self.generator, ema_decay) if ema_decay else None
        self.gan_loss = GANLoss(gan_mode)
        if not 0.0 <= weight_decay < 1.0:
            raise ValueError(f"model.weight_decay must be in [0, 1), got {weight_decay}")
        if recon_loss not in RECON_LOSSES:
            raise ValueError(f"model.recon_loss must be one of {sorted(RECON_LOSSES)}, got {recon_loss!r}")
        self.recon_loss = RECON_LOSSES[recon_loss]
        # head=classification: the reconstruction term is Zhang et al.'s rebalanced cross-entropy over ab bins
        is_bins = isinstance(self.generator, ColorBinsGenerator)
        self.bin_loss = ColorBinLoss(self.generator.bins, rebalance=rebalance) if is_bins else None
        # val/<name>: the per-image metrics of evaluate.py, on the same rendered uint8 pictures
        self.val_metrics = torch.nn.ModuleDict({name: MeanMetric() for name in PER_IMAGE_METRICS})
        self.val_psnr_gray = MeanMetric()  # the gray baseline on the same images: the PSNR guard's bar
        if realism_metric not in ("auto", *REALISM_METRICS):
            raise ValueError(f"model.realism_metric must be auto or one of {REALISM_METRICS}, got {realism_metric!r}")
        self.realism = RealismScore(realism_metric, realism_probe)
        self.bad_steps_in_a_row = 0
        self.batchnorm_before_step = {"generator": BatchNormSnapshot(), "discriminator": BatchNormSnapshot()}

    def networks(self) -> dict[str, torch.nn.Module]:
        nets = {"generator": self.generator, "discriminator": self.discriminator}
        return {name: net for name, net in nets.items() if net is not None}

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.hparams.init_from:
            load_generator_weights(self.generator, self.hparams.init_from)
            log.info("generator initialised from %s", self.hparams.init_from)
            if self.generator_ema is not None:
                # the average restarts at the loaded weights; a resume then restores the saved one
                self.generator_ema = GeneratorEMA(self.generator, self.hparams.ema_decay)
        if self.hparams.channels_last:  # NHWC: faster convolutions with oneDNN and cuDNN
            self.to(memory_format=torch.channels_last)
        if self.hparams.compile and stage == "fit":
            for net in self.networks().values():
                net.compile()  # in place: parameter names, and so checkpoints, stay the same

    def _memory_format(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.hparams.channels_last else x

    def forward(self, L: torch.Tensor) -> torch.Tensor:
        return self.generator(L)

    def configure_optimizers(self) -> Any:
        betas = tuple(self.hparams.betas)

        def adam(net: torch.nn.Module, lr: float, weight_decay: float = 0.0) -> torch.optim.Adam:
            # the fused kernel is one pass over the weights: 5x faster than foreach on CPU (0.03 vs
            # 0.17 s for the 54M-parameter U-Net 256), a few % of a CIFAR step. Lightning's mixed
            # precision cannot clip the gradients of a fused optimizer, so clipping keeps foreach.
            fused = not self.hparams.gradient_clip_val and all(
                p.device.type in ("cpu", "cuda") for p in net.parameters()
            )
            if weight_decay:  # decoupled from the gradient's scale (AdamW), as Loshchilov and Hutter
                return torch.optim.AdamW(net.parameters(), lr, betas, weight_decay=weight_decay, fused=fused or None)
            return torch.optim.Adam(net.parameters(), lr=lr, betas=betas, fused=fused or None)

        optimizers = [adam(self.generator, self.hparams.lr, self.hparams.get("weight_decay", 0.0))]
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

        schedulers = [
            {"scheduler": torch.optim.lr_scheduler.LambdaLR(opt, factor), "name": name}
            for opt, name in zip(optimizers, ["lr/generator", "lr/discriminator"])
        ]
        return optimizers, schedulers

    def _schedulers(self) -> list[torch.optim.lr_scheduler.LambdaLR]:
        schedulers = self.lr_schedulers()
        return schedulers if isinstance(schedulers, list) else [schedulers] if schedulers else []

    def on_train_start(self) -> None:
        """Set each optimizer's rate from its schedule at the restored batch count.

        A resume restores the optimizers' last rates (0 at the end of a finished run) and the
        schedulers' counts; the new run's schedule takes over only at its next step, so without this
        the first resumed batch would still train at the old run's final rate.
        """
        for scheduler in self._schedulers():
            rates = [base * fn(scheduler.last_epoch) for base, fn in zip(scheduler.base_lrs, scheduler.lr_lambdas)]
            for group, lr in zip(scheduler.optimizer.param_groups, rates):
                group["lr"] = lr
            scheduler._last_lr = rates  # what get_last_lr() reports

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

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        L, ab = self._memory_format(batch["L"]), self._memory_format(batch["ab"])
        optimizers = self.optimizers()
        opt_g, opt_d = optimizers if isinstance(optimizers, list) else (optimizers, None)
        for name, net in self.networks().items():
            self.batchnorm_before_step[name].take(net)
        if self.bin_loss is not None:
            logits = self.generator.logits(L)
            fake = self.generator.decode(logits, L.shape[-2:])
        else:
            fake = self.generator(L)
        losses: dict[str, torch.Tensor] = {}
        stepped = []

        if self.discriminator is not None:
            with self.toggled_optimizer(opt_d):
                d_loss, d_real, d_fake = self.gan_loss.discriminator(
                    self.discriminator(L, ab), self.discriminator(L, fake.detach())
                )
                stepped.append(self._step("discriminator", opt_d, d_loss))
            losses.update(d_loss=d_loss, d_real=d_real, d_fake=d_fake)

        with self.toggled_optimizer(opt_g):
            g_gan = torch.zeros((), device=L.device)
            if self.discriminator is not None:
                with running_stats_frozen(self.discriminator):  # D's statistics are D's step's
                    g_gan = self.gan_loss.generator(self.discriminator(L, fake))
            g_l1 = F.l1_loss(fake.float(), ab)
            if self.bin_loss is not None:
                g_rec = self.bin_loss(logits, ab)
            else:
                g_rec = g_l1 if self.recon_loss is RECON_LOSSES["l1"] else self.recon_loss(fake, ab, L)
            g_loss = self.hparams.lambda_gan * g_gan + self.hparams.lambda_l1 * g_rec
            stepped.append(self._step("generator", opt_g, g_loss))
        if stepped[-1] and self.generator_ema is not None:
            self.generator_ema.update(self.generator)
        losses.update(g_loss=g_loss, g_l1=g_l1, g_gan=g_gan)

        if all(stepped):
            self.bad_steps_in_a_row = 0
        for scheduler in self._schedulers():
            scheduler.step()
        logs = {f"train/{k}": v.detach() for k, v in losses.items()}
        self.log_dict(logs, on_step=True, on_epoch=True, batch_size=len(L))
        self.log("train/bad_steps", float(self.bad_steps_in_a_row), on_step=True, on_epoch=False, batch_size=len(L))

    def _step(self, name: str, optimizer: Any, loss: torch.Tensor) -> bool:
        """Backward and step ``name``'s optimizer, unless the loss is non-finite on any rank.

        A skipped step rolls back the BatchNorm statistics its forward passes moved (to NaN) and
        counts towards ``max_bad_steps``. Clipping happens in ``on_before_optimizer_step``.
        """
        if self.trainer.strategy.reduce_boolean_decision(bool(torch.isfinite(loss.detach())), all=True):
            optimizer.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            optimizer.step()
            return True
        self.batchnorm_before_step[name].restore()  # the other network's statistics stay
        self.bad_steps_in_a_row += 1
        log.warning("non-finite %s loss (%s) at step %d: step skipped", name, loss.item(), self.global_step)
        if self.bad_steps_in_a_row >= self.hparams.max_bad_steps:
            self.batchnorm_before_step["generator"].restore()  # G's step will not happen either
            raise NonFiniteLossError(
                f"{self.bad_steps_in_a_row} optimizer steps in a row had a non-finite loss (last: {name} = "
                f"{loss.item()}); stopping. The last good checkpoint is intact. Try a lower model.lr, "
                "model.gradient_clip_val=1.0, or trainer.precision=32-true, and check the data for bad images."
            )
        return False

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Clip here, inside ``optimizer.step()``: under 16-mixed Lightning has just unscaled the gradients.

        Clipping before the step would see loss-scaled gradients, and unscaling them ourselves makes
        Lightning's own ``unscale_`` in the step raise (it may only run once per step).
        """
        if self.hparams.gradient_clip_val:
            self.clip_gradients(optimizer, self.hparams.gradient_clip_val, "norm")

    def on_validation_model_eval(self) -> None:
        super().on_validation_model_eval()
        set_stochastic_inference(self.colorizer, self.hparams.stochastic_inference)  # as evaluate.py and colorize

    @property
    def colorizer(self) -> torch.nn.Module:
        """The generator inference uses: the weight average when there is one."""
        return self.generator if self.generator_ema is None else self.generator_ema.module

    def on_fit_start(self) -> None:
        self.realism.setup(self.device)
        if self.bin_loss is not None and self.bin_loss.rebalance < 1 and not self.bin_loss.has_prior:
            self._count_colour_prior()

    @torch.no_grad()
    def _count_colour_prior(self) -> None:
        """Count the training set's ab bins once (a resume restores them from the checkpoint)."""
        seen = 0
        for batch in self.trainer.datamodule.train_dataloader():
            _, ab = rgb_to_lab_normalized(batch["rgb"].to(self.device))
            self.bin_loss.count(ab)
            seen += len(ab)
            if seen >= PRIOR_IMAGES:
                break
        counts = self.trainer.strategy.reduce(self.bin_loss.counts, reduce_op="sum")  # every rank's images
        self.bin_loss.counts.copy_(counts)
        used = int((self.bin_loss.counts > 0).sum())
        log.info("colour prior from %d images: %d of %d ab bins used", seen, used, len(self.bin_loss.counts))

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        """Score the rendered uint8 pictures; return the first ``num_samples`` of them for the sample grid."""
        L, ab = batch["L"], batch["ab"]
        fake = self.colorizer(self._memory_format(L)).float()
        pred, truth = Rendered.from_lab(L, fake), Rendered(batch["rgb"], ab)
        gray = Rendered.gray(L)
        for name, score in PER_IMAGE_METRICS.items():
            self.val_metrics[name].update(score(pred, truth))
        self.val_psnr_gray.update(PER_IMAGE_METRICS["psnr"](gray, truth))
        self.realism.update(pred, truth)
        n = self.hparams.num_samples
        return {"gray": gray.rgb[:n], "colorized": pred.rgb[:n], "truth": truth.rgb[:n]}

    def on_validation_epoch_end(self) -> None:
        metrics = {f"val/{name}": metric.compute() for name, metric in self.val_metrics.items()}
        metrics["val/psnr_gain"] = metrics["val/psnr"] - self.val_psnr_gray.compute()  # over the gray baseline
        metrics.update(self.realism.compute(metrics))
        for name, value in metrics.items():
            self.log(name, value, prog_bar=name in ("val/l1_ab", "val/psnr", "val/realism"))
        for metric in (*self.val_metrics.values(), self.val_psnr_gray):
            metric.reset()
        self.realism.reset()
