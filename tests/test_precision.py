"""Mixed precision with the two-optimizer manual loop: bf16-mixed trains on the CPU with Lab in
float32, and under 16-mixed the gradients are clipped after the GradScaler has unscaled them."""

from __future__ import annotations

import logging
import math

import hydra
import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.plugins.precision import MixedPrecision

from colorgan import precision
from colorgan.color import lab_normalized_to_rgb, rgb_to_lab_normalized
from colorgan.train.build import build
from tests.conftest import train_overrides

FEW_STEPS = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "callbacks=none"]


class Watch(Callback):
    """Weights before training, the dtypes of each batch, and the losses of each step."""

    def __init__(self) -> None:
        self.batch_dtypes: set[torch.dtype] = set()
        self.losses: list[float] = []

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.before = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: dict, batch_idx: int) -> None:
        self.batch_dtypes |= {batch["L"].dtype, batch["ab"].dtype}

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx) -> None:
        metrics = trainer.callback_metrics
        self.losses += [float(metrics[k]) for k in ("train/g_loss_step", "train/g_l1_step", "train/d_loss_step")]

    def moved(self, module: LightningModule, prefix: str) -> bool:
        return any(not torch.equal(v, self.before[k]) for k, v in module.state_dict().items() if k.startswith(prefix))


def test_bf16_mixed_trains_on_cpu_with_lab_in_float32(make_cfg):
    cfg = make_cfg(
        train_overrides("cifar_gan", "trainer.precision=bf16-mixed", "model.gradient_clip_val=1.0", *FEW_STEPS)
    )
    datamodule, model, trainer = build(cfg)
    watch = Watch()
    trainer.callbacks.append(watch)
    trainer.fit(model, datamodule=datamodule)

    assert isinstance(trainer.precision_plugin, MixedPrecision) and trainer.precision_plugin.precision == "bf16-mixed"
    assert watch.batch_dtypes == {torch.float32}  # the Lab conversion never runs in bf16
    assert len(watch.losses) == 6 and all(math.isfinite(x) for x in watch.losses)
    assert watch.moved(model, "generator.") and watch.moved(model, "discriminator.")
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in model.parameters())  # fp32 masters


def test_lab_conversions_stay_float32_inside_autocast():
    rgb = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        L, ab = rgb_to_lab_normalized(rgb)
        back = lab_normalized_to_rgb(L, ab)
    assert L.dtype == ab.dtype == back.dtype == torch.float32
    assert torch.allclose(back * 255, rgb.float(), atol=1.0)


def grad_norm(parameters) -> float:
    grads = [p.grad.detach().float() for p in parameters if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))


def clip_norms(make_cfg, tmp_path, scaler: torch.amp.GradScaler | None, clip: float) -> tuple[list, Trainer]:
    """Gradient norms seen by each clip call (before, after) for one seeded batch."""
    # lambda_l1 pinned: fp16 holds the loss times the scale only while the loss stays small
    overrides = train_overrides(
        "cifar_gan", "seed=3", "model.lambda_l1=100", f"model.gradient_clip_val={clip}", *FEW_STEPS
    )
    cfg = make_cfg([*overrides, "trainer.limit_train_batches=1", "trainer.limit_val_batches=0"], output_dir=tmp_path)
    datamodule, model, _ = build(cfg)
    plugins = [MixedPrecision("16-mixed", "cpu", scaler=scaler)] if scaler else []
    trainer = hydra.utils.instantiate(
        cfg.trainer, precision=None if scaler else "32-true", plugins=plugins, logger=False, enable_checkpointing=False
    )
    seen: list[tuple[float, float]] = []
    original = model.clip_gradients

    def spy(optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        params = [p for group in optimizer.param_groups for p in group["params"]]
        before = grad_norm(params)
        original(optimizer, gradient_clip_val, gradient_clip_algorithm)
        seen.append((before, grad_norm(params)))

    model.clip_gradients = spy
    trainer.fit(model, datamodule=datamodule)
    return seen, trainer


def test_16_mixed_clips_unscaled_gradients(make_cfg, tmp_path):
    # fp16 autocast on the CPU with a real GradScaler (Lightning picks bf16 for "16-mixed" on a CPU
    # on its own, so the plugin is passed in); the scale is large, so clipping scaled gradients shows
    scale = 2.0**8
    clip = 1e-3
    reference, _ = clip_norms(make_cfg, tmp_path / "fp32", None, clip)
    scaled, trainer = clip_norms(make_cfg, tmp_path / "fp16", torch.amp.GradScaler("cpu", init_scale=scale), clip)
    assert trainer.precision_plugin.scaler.get_scale() == scale  # no overflow: both optimizer steps were taken
    assert len(reference) == len(scaled) == 2  # one clip for D, one for G
    for (ref_before, _), (before, after) in zip(reference, scaled):
        assert before == pytest.approx(ref_before, rel=0.2)  # true gradients, not `scale` times larger
        assert after <= clip * 1.01  # and the clip holds for the gradients the optimizer steps with


def cpu_has_native_bf16(cpuinfo) -> bool:
    return any(flag in precision.read_cpuinfo(cpuinfo)[1] for flag in precision.NATIVE_BF16_FLAGS)


def test_cpu_bf16_detection_reads_the_cpu_flags(tmp_path):
    with_bf16, without, missing = tmp_path / "a", tmp_path / "b", tmp_path / "nope"
    with_bf16.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512vl\n")
    without.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512vl\n")
    assert cpu_has_native_bf16(with_bf16)
    assert not cpu_has_native_bf16(without)
    assert not cpu_has_native_bf16(missing)


# ------------------------------------------------------------------------- auto: measured, not guessed
BF16_CPU = "processor\t: 0\nmodel name\t: Test CPU {model}\nflags\t\t: fpu avx2 avx512f avx512_bf16 {extra}\n"
NO_BF16_CPU = "processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu avx2 avx512f avx512vl\n"


def cpuinfo_file(tmp_path, text: str, name: str = "cpuinfo"):
    path = tmp_path / name
    path.write_text(text)
    return path


class FakeTimer:
    """Injected timings (seconds per pass) so the tests never depend on this machine's speed."""

    def __init__(self, fp32: float, bf16: float) -> None:
        self.fp32, self.bf16 = fp32, bf16
        self.calls: list[list[str]] = []

    def __call__(self, names: list[str]) -> dict[str, float]:
        self.calls.append(list(names))
        return {n: self.bf16 if n.startswith("bf16") else self.fp32 for n in names}


def never(names: list[str]) -> dict[str, float]:
    raise AssertionError("measured although it should not have")


@pytest.mark.parametrize(
    ("fp32", "bf16", "expected"),
    [
        (0.050, 0.030, "bf16-mixed"),  # bf16 1.67x faster (the AMD EPYC this is developed on)
        (0.030, 0.050, "32-true"),  # bf16 slower (an Intel Xeon with AVX512-BF16 and no AMX)
        (0.050, 0.047, "32-true"),  # bf16 only 6% faster: not worth leaving exact fp32
    ],
)
def test_auto_follows_the_measured_timings(tmp_path, caplog, fp32, bf16, expected):
    timer = FakeTimer(fp32, bf16)
    choice = precision.choose_cpu_precision(
        timer=timer, cpuinfo=cpuinfo_file(tmp_path, BF16_CPU.format(model="A", extra="")), cache=tmp_path / "c.json"
    )
    assert choice.precision == expected and choice.source == "measured"
    assert timer.calls == [["fp32", "channels_last", "bf16-mixed", "bf16-mixed+channels_last"]]
    assert f"{bf16 * 1e3:.1f} ms" in choice.reason and f"{fp32 * 1e3:.1f} ms" in choice.reason


def test_the_cache_is_used_the_second_time_and_keyed_by_machine(tmp_path, monkeypatch):
    cache = tmp_path / "cache" / "precision.json"
    amd = cpuinfo_file(tmp_path, BF16_CPU.format(model="A", extra=""), "a")
    first = precision.choose_cpu_precision(timer=FakeTimer(0.05, 0.03), cpuinfo=amd, cache=cache)
    again = precision.choose_cpu_precision(timer=never, cpuinfo=amd, cache=cache)
    assert (first.source, again.source) == ("measured", "cache")
    assert again.precision == first.precision == "bf16-mixed" and again.seconds == first.seconds
    assert again.key == first.key and "Test CPU A" in first.key and torch.__version__ in first.key

    other_model = cpuinfo_file(tmp_path, BF16_CPU.format(model="B", extra=""), "b")
    other_flags = cpuinfo_file(tmp_path, BF16_CPU.format(model="A", extra="amx_tile"), "c")
    for cpuinfo in (other_model, other_flags):  # another machine: measured for itself
        timer = FakeTimer(0.03, 0.05)
        assert precision.choose_cpu_precision(timer=timer, cpuinfo=cpuinfo, cache=cache).precision == "32-true"
        assert len(timer.calls) == 1
    assert precision.choose_cpu_precision(timer=never, cpuinfo=amd, cache=cache).precision == "bf16-mixed"

    monkeypatch.setenv(precision.REMEASURE_ENV, "1")  # forced: measured again, the cache updated
    assert precision.choose_cpu_precision(timer=FakeTimer(0.03, 0.05), cpuinfo=amd, cache=cache).source == "measured"
    monkeypatch.delenv(precision.REMEASURE_ENV)
    assert precision.choose_cpu_precision(timer=never, cpuinfo=amd, cache=cache).precision == "32-true"


def test_no_native_bf16_means_fp32_without_measuring(tmp_path):
    cache = tmp_path / "precision.json"
    for cpuinfo in (cpuinfo_file(tmp_path, NO_BF16_CPU), tmp_path / "no_such_file"):
        choice = precision.choose_cpu_precision(timer=never, cpuinfo=cpuinfo, cache=cache)
        assert choice.precision == "32-true" and choice.source == "no native bf16" and not choice.seconds
    assert not cache.exists()


def test_an_unwritable_cache_only_skips_caching(tmp_path):
    (tmp_path / "a_file").write_text("")
    cache = tmp_path / "a_file" / "precision.json"  # its folder cannot be made
    cpuinfo = cpuinfo_file(tmp_path, BF16_CPU.format(model="A", extra=""))
    for _ in range(2):
        timer = FakeTimer(0.05, 0.03)
        assert precision.choose_cpu_precision(timer=timer, cpuinfo=cpuinfo, cache=cache).precision == "bf16-mixed"
        assert len(timer.calls) == 1


def test_precisions_are_compared_in_the_models_memory_format(tmp_path):
    seconds = {"fp32": 0.050, "channels_last": 0.030, "bf16-mixed": 0.040, "bf16-mixed+channels_last": 0.035}
    assert precision.decide(seconds, channels_last=False)[0] == "bf16-mixed"  # 1.25x in NCHW
    assert precision.decide(seconds, channels_last=True)[0] == "32-true"  # slower in channels_last
    assert precision.decide(seconds, channels_last=None)[0] == "32-true"  # best against best


def test_the_micro_benchmark_times_every_candidate():
    names = [name for name, _, _ in precision.CANDIDATES]
    seconds = precision.time_candidates(names, rounds=1, batch=1, side=8)
    assert set(seconds) == set(names) and all(0 < s < math.inf for s in seconds.values())  # any speed: a busy CPU


@pytest.mark.parametrize(("fp32", "bf16", "expected"), [(0.05, 0.03, "bf16-mixed"), (0.03, 0.05, "32-true")])
def test_training_takes_what_auto_measured_and_logs_why(monkeypatch, make_cfg, tmp_path, caplog, fp32, bf16, expected):
    monkeypatch.setenv("COLORGAN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(precision, "read_cpuinfo", lambda cpuinfo=None: ("Test CPU", frozenset({"avx512_bf16"})))
    monkeypatch.setattr(precision, "time_candidates", FakeTimer(fp32, bf16))
    caplog.set_level(logging.INFO, logger="colorgan.precision")
    assert precision.resolve_precision("auto", "cpu") == expected
    assert precision.resolve_precision("32-true", "cpu") == "32-true"  # an explicit choice is kept
    _, _, trainer = build(make_cfg(train_overrides("cifar_pretrain", "trainer.precision=auto", *FEW_STEPS)))
    assert trainer.precision_plugin.precision == expected
    logged = [r.getMessage() for r in caplog.records if "trainer.precision=auto" in r.getMessage()]
    assert logged and all(expected in m and f"{fp32 * 1e3:.1f} ms" in m for m in logged)


def test_the_micro_benchmark_leaves_the_seeded_rng_alone():
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    precision.time_candidates(["fp32"], rounds=1, batch=1, side=8)
    assert torch.equal(torch.rand(4), expected)
