"""DDP with the manual D/G loop: two CPU ranks over gloo, launched by train.py as on GPUs, end with
identical weights, and the checkpoint they wrote resumes on a single process."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from colorgan.train.build import build
from tests.cli import run_script
from tests.conftest import train_overrides

pytestmark = [pytest.mark.slow, pytest.mark.distributed]


def state_digest(module: torch.nn.Module) -> dict[str, str]:
    """sha256 of every parameter and buffer (BatchNorm statistics included)."""
    return {
        name: hashlib.sha256(tensor.detach().cpu().contiguous().numpy().tobytes()).hexdigest()
        for name, tensor in module.state_dict().items()
    }


def parameters_only(digest: dict[str, str], module_keys: set[str]) -> dict[str, str]:
    return {k: v for k, v in digest.items() if k in module_keys}


def optimizer_steps(trainer: Trainer) -> list[int]:
    return [int(next(iter(opt.state.values()))["step"]) for opt in trainer.optimizers]


class RankState(Callback):
    """Each rank writes rank<N>.json: its weights' digests at the start and the end of training."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.start: dict[str, str] = {}

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.start = state_digest(pl_module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        state = {
            "world_size": trainer.world_size,
            "parameters": [name for name, _ in pl_module.named_parameters()],
            "start": self.start,
            "end": state_digest(pl_module),
            "global_step": trainer.global_step,
            "optimizer_steps": optimizer_steps(trainer),
        }
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(state))


class RestoredState(Callback):
    """What the resumed single-process run starts from."""

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.digest = state_digest(pl_module)
        self.epoch, self.global_step, self.steps = trainer.current_epoch, trainer.global_step, optimizer_steps(trainer)


def test_ddp_ranks_end_identical_and_checkpoint_resumes_on_one_process(data_dir, make_cfg, tmp_path):
    run, ranks = tmp_path / "ddp", tmp_path / "ranks"
    overrides = [o for o in train_overrides("cifar_gan") if o != "trainer.accelerator=cpu"]
    overrides += [
        "trainer=ddp_sim",
        f"paths.data_dir={data_dir}",
        f"hydra.run.dir={run}",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",  # of 3 per rank: 48 images / 2 ranks / batch 8
        "trainer.num_sanity_val_steps=0",
        f"+callbacks.rank_state._target_={RankState.__module__}.RankState",
        f"+callbacks.rank_state.out_dir={ranks}",
    ]
    proc = run_script("train.py", *overrides)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]

    rank0, rank1 = (json.loads((ranks / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank0["world_size"] == rank1["world_size"] == 2
    assert rank0["start"] == rank1["start"]  # rank 0's initial weights were broadcast
    params = set(rank0["parameters"])
    assert len(params) > 20
    # gradients all-reduced: every weight identical. (BatchNorm running statistics are not: without
    # SyncBatchNorm, which needs GPUs, each rank's include its own last batch; DDP re-broadcasts rank
    # 0's at every forward, and rank 0 writes the checkpoints.)
    assert parameters_only(rank0["end"], params) == parameters_only(rank1["end"], params)
    moved = [k for k in rank0["end"] if rank0["end"][k] != rank0["start"][k]]
    assert any(k.startswith("generator.") for k in moved) and any(k.startswith("discriminator.") for k in moved)
    assert rank0["optimizer_steps"] == rank1["optimizer_steps"] == [2, 2]  # G and D, once per batch
    assert rank0["global_step"] == 4  # Lightning counts both optimizers' steps

    # the rank-0 checkpoint continues on one process, with the weights and counters DDP ended with
    ckpt = run / "checkpoints" / "last.ckpt"
    cfg = make_cfg(
        train_overrides("cifar_gan", "trainer.max_epochs=2", "trainer.limit_train_batches=2", f"ckpt_path={ckpt}"),
        output_dir=tmp_path / "resumed",
    )
    datamodule, model, trainer = build(cfg)
    restored = RestoredState()
    trainer.callbacks.append(restored)
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    assert restored.digest == rank0["end"]
    assert (restored.epoch, restored.global_step, restored.steps) == (1, 4, [2, 2])
    assert trainer.current_epoch == 2 and trainer.global_step == 8 and optimizer_steps(trainer) == [4, 4]
    assert all(config.scheduler.last_epoch == 4 for config in trainer.lr_scheduler_configs)  # per batch
