"""evaluate.py on a tiny checkpoint: a well-formed metrics.json, model and gray side by side."""

from __future__ import annotations

import json
import math

from colorgan.evaluation import evaluate
from colorgan.training import train
from tests.conftest import train_overrides


def test_evaluate_writes_metrics_for_model_and_gray_baseline(make_cfg, tmp_path):
    summary = train(make_cfg(train_overrides("cifar_pretrain", "trainer.max_epochs=1"), output_dir=tmp_path / "run"))
    out = tmp_path / "eval"
    report = evaluate(
        make_cfg(
            [f"ckpt_path={summary['last_checkpoint']}", "device=cpu", "data.eval_batch_size=10"],
            config_name="eval",
            output_dir=out,
        )
    )
    written = json.loads((out / "metrics.json").read_text())
    assert written == json.loads(json.dumps(report))
    assert written["num_images"] == 24  # the whole tiny test split, last partial batch included
    models = written["models"]
    assert set(models) == {"gray", "run/last"}
    for row in models.values():
        assert set(row) >= {"psnr", "ssim", "l1_ab", "colorfulness"}
        assert all(math.isfinite(v) for v in row.values())
    assert models["gray"]["colorfulness"] < 1.0 < written["ground_truth"]["colorfulness"]
    assert models["gray"]["psnr"] > 10
    assert (out / "samples.png").is_file()
