"""Train a colorization model: python train.py experiment=cifar_pretrain [key=value ...]"""

import os
from pathlib import Path

os.environ.setdefault("COLORGAN_ROOT", str(Path(__file__).resolve().parent))

import hydra
from omegaconf import DictConfig

from colorgan.launch import run_task
from colorgan.training import train


@hydra.main(version_base="1.3", config_path="conf", config_name="train.yaml")
def main(cfg: DictConfig) -> float | None:
    # W&B always finished; a known mistake prints one message and exits 1; in a multirun a failed job is recorded
    summary = run_task(train, cfg)
    return summary["metrics"].get(cfg.get("optimized_metric"))  # what Hydra sweepers minimise (None: failed)


if __name__ == "__main__":
    main()
