"""Train a colorization model: python train.py experiment=cifar_pretrain [key=value ...]"""

import os
import sys
from pathlib import Path

os.environ.setdefault("COLORGAN_ROOT", str(Path(__file__).resolve().parent))

import hydra
from omegaconf import DictConfig

from colorgan.runs.launch import run_task
from colorgan.train.build import train

# `debug` names the group of debug configs (conf/debug/), so Hydra would read debug=true as a config choice and
# refuse the boolean; the switch keeps its meaning: debug=true is debug=traceback, debug=false the default.
DEBUG_SWITCH = {"debug=true": ["debug=traceback"], "debug=false": []}


def command_line(argv: list[str]) -> list[str]:
    """The overrides as Hydra reads them, with the two spellings the configs no longer have a key for."""
    out = []
    for arg in argv:
        if arg.startswith("trainer.gradient_clip_val="):
            arg = "+" + arg  # added, so that the config check refuses it naming model.gradient_clip_val
        out += DEBUG_SWITCH.get(arg.lower(), [arg])
    return out


@hydra.main(version_base="1.3", config_path="conf", config_name="train.yaml")
def main(cfg: DictConfig) -> float | None:
    summary = run_task(train, cfg)
    return summary["metrics"].get(cfg.get("optimized_metric"))  # what Hydra sweepers minimise (None: failed)


if __name__ == "__main__":
    sys.argv = command_line(sys.argv)
    main()
