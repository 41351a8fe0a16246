"""The models that ship with colorgan: small fp16 folders that every command loads by name."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file

from colorgan.apps.colorize import main as colorize
from colorgan.apps.demo import build_parser as demo_parser
from colorgan.evaluate.evaluator import evaluate
from colorgan.model_folder import SHIPPED_DIR, shipped_models
from tests.test_evaluate import compose_cfg

pytestmark = pytest.mark.usefixtures("one_thread")
SHIPPED = ["cifar10-faithful", "cifar10-colourful", "imagenette-faithful"]  # named: a missing folder fails
MB = 1024 * 1024
MAX_BYTES = {"cifar10-faithful": 10 * MB, "cifar10-colourful": 10 * MB, "imagenette-faithful": 20 * MB}  # photo: 20


def test_the_faithful_and_the_colourful_model_ship_and_the_demo_opens_with_the_colourful_one():
    assert set(SHIPPED) <= set(shipped_models())
    assert demo_parser().parse_args([]).ckpt == "cifar10-colourful"


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_model_is_a_small_fp16_folder_with_its_evaluation(name):
    folder = SHIPPED_DIR / name
    assert (folder / "model.safetensors").stat().st_size <= MAX_BYTES[name]
    weights = load_file(folder / "model.safetensors")
    assert all(str(t.dtype) == "torch.float16" for t in weights.values() if t.is_floating_point())
    card = (folder / "README.md").read_text()
    assert "| psnr" in card or "psnr |" in card  # the evaluate.py table it was shipped with


@pytest.mark.parametrize("name", SHIPPED)
def test_colorize_takes_a_shipped_model_by_name_and_adds_colour(name, tmp_path):
    rng = np.random.default_rng(0)
    gray = Image.fromarray(rng.integers(0, 255, (40, 48), dtype=np.uint8)).convert("RGB")
    gray.save(tmp_path / "gray.png")
    assert colorize([str(tmp_path / "gray.png"), "--ckpt", name, "--out", str(tmp_path / "out")]) == 0
    rgb = np.asarray(Image.open(tmp_path / "out" / "gray.png").convert("RGB")).astype(int)
    assert np.abs(rgb - rgb.mean(axis=2, keepdims=True)).mean() > 1  # no longer gray


@pytest.mark.parametrize("name", SHIPPED)
def test_evaluate_takes_a_shipped_model_by_name(name, data_dir, tmp_path):
    report = evaluate(compose_cfg([f"ckpt_path={name}", "device=cpu"], data_dir, tmp_path))
    assert set(report["models"]) == {"gray", name}
