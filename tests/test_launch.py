"""Running a job: the task wrapper always finishes W&B, with the job's exit code; DDP that would
re-run the script inside a multirun is refused."""

from __future__ import annotations

import sys
import types

import pytest

from colorgan.runs.launch import check_launch, run_task
from colorgan.train.config_checks import ConfigError
from tests.conftest import train_overrides


class FakeWandb(types.ModuleType):
    """Stands in for the wandb module: an open run and a record of finish()."""

    def __init__(self) -> None:
        super().__init__("wandb")
        self.run: object | None = object()
        self.finished: list[int] = []

    def finish(self, exit_code: int = 0) -> None:
        self.finished.append(exit_code)
        self.run = None


def test_task_wrapper_finishes_wandb_and_reraises_in_a_single_run(make_cfg, monkeypatch):
    cfg = make_cfg(train_overrides("cifar_gan"))
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)

    def broken(_cfg):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run_task(broken, cfg)
    assert fake.finished == [1]
    fake.run = object()
    assert run_task(lambda _cfg: {"metrics": {}}, cfg) == {"metrics": {}}
    assert fake.finished == [1, 0]


def test_ddp_that_reruns_the_script_is_refused_inside_a_multirun(make_cfg, monkeypatch):
    for var in ("SLURM_NTASKS", "TORCHELASTIC_RUN_ID", "LSB_JOBID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("colorgan.runs.launch.hydra_job", lambda: {"multirun": True})
    with pytest.raises(ConfigError, match="start_method=spawn"):
        check_launch(make_cfg(train_overrides("cifar_gan", "trainer=ddp_sim")))
    check_launch(make_cfg(train_overrides("cifar_gan", "trainer=ddp_sim", "trainer.strategy.start_method=spawn")))
    check_launch(make_cfg(train_overrides("cifar_gan", "trainer=cpu")))
    # under SLURM, srun has started every rank already: Lightning does not re-run the script
    monkeypatch.setenv("SLURM_NTASKS", "2")
    monkeypatch.setenv("SLURM_JOB_NAME", "colorgan")
    check_launch(make_cfg(train_overrides("cifar_gan", "trainer=ddp_sim")))
    monkeypatch.setattr("colorgan.runs.launch.hydra_job", lambda: {"multirun": False})
    monkeypatch.delenv("SLURM_NTASKS")
    check_launch(make_cfg(train_overrides("cifar_gan", "trainer=ddp_sim")))  # a single run may re-run itself
