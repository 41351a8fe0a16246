"""The per-epoch sample grid reaches the run folder and TensorBoard, at the step of its epoch's metrics."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from colorgan.train.build import train
from tests.conftest import train_overrides


def test_tensorboard_gets_the_grid_written_to_the_run_folder(make_cfg, tmp_path):
    out = tmp_path / "run"
    overrides = [
        "logger=tensorboard",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "trainer.num_sanity_val_steps=0",
    ]
    train(make_cfg(train_overrides("cifar_gan", *overrides), output_dir=out))
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0}).Reload()
    panels = events.Images("val/samples")
    assert [p.step for p in panels] == [s.step for s in events.Scalars("val/l1_ab")] == [1, 3]
    for epoch, panel in enumerate(panels):
        logged = np.asarray(Image.open(io.BytesIO(panel.encoded_image_string)).convert("RGB"))
        with Image.open(out / "samples" / f"epoch_{epoch:03d}.png") as grid:
            assert np.array_equal(logged, np.asarray(grid.convert("RGB")))
