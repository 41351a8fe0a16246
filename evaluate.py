"""Evaluate checkpoints on a test split: python evaluate.py ckpt_path=PATH [data=...] [eval.probe_weights=...]

Writes metrics.json, report.md, samples.png and per_class.png into the run folder. A mistake (a missing
checkpoint, missing data or weights) prints one message and exits with code 1; debug=true shows the traceback.
"""

import os
from pathlib import Path

os.environ.setdefault("COLORGAN_ROOT", str(Path(__file__).resolve().parent))

import hydra
from omegaconf import DictConfig

from colorgan.evaluate.evaluator import evaluate
from colorgan.runs.launch import run_task


@hydra.main(version_base="1.3", config_path="conf", config_name="eval.yaml")
def main(cfg: DictConfig) -> None:
    run_task(evaluate, cfg)


if __name__ == "__main__":
    main()
