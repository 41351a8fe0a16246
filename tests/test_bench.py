"""The benchmark runs end to end on tiny settings and writes well-formed results (no timing asserts)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from colorgan import bench
from colorgan.bench.cli import PARTS
from colorgan.bench.default_precision import part_default_precision
from colorgan.bench.report import write_report
from tests.conftest import HANG_GUARD_S, ROOT


@pytest.mark.slow
def test_quick_benchmark_writes_results(data_dir, tmp_path):
    out = tmp_path / "bench"
    bench.main(["--quick", "--data-dir", str(data_dir), "--out", str(out), "--epoch-fraction", "0.5"])
    results = json.loads((out / "results.json").read_text())
    assert set(PARTS) <= set(results)
    assert results["hardware"]["torch"] and results["hardware"]["date"]
    assert all(v > 0 for v in results["limit"].values())
    before, after = results["limit_measurements"]
    assert results["limit"] == {k: max(before[k], after[k]) for k in before}

    lab = results["lab"]
    assert {r["size"] for r in lab} == {32, 64}
    for size in (32, 64):
        rows = [r for r in lab if r["size"] == size]
        assert rows[0]["ratio"] == 1.0 and "baseline" in rows[0]["method"]
        ours = next(r for r in rows if r["method"].startswith("colorgan"))
        assert ours["max_error_lab"] < 0.05 and ours["images_per_s"] > 0
        assert math.isclose(ours["ratio"], ours["images_per_s"] / rows[0]["images_per_s"], rel_tol=1e-6)

    step = results["step"]
    assert [r["variant"] for r in step] == ["fp32", "channels_last"]
    assert step[0]["ratio_vs_fp32"] == 1.0 and step[0]["gflop_per_image"] > 0
    assert step[0]["fraction_of_fp32_conv_peak"] > 0
    assert math.isclose(
        step[0]["fraction_of_fp32_conv_peak"],
        step[0]["achieved_gflops"] / results["limit"]["conv3x3_fp32_gflops"],
        rel_tol=1e-6,
    )
    assert all(r["timed_steps"] == 2 * 3 for r in step)  # 2 rounds (quick) x 3 steps at 32 x 32

    data = {r["data"]: r for r in results["data"]}
    assert set(data) >= {"cifar10 on_device=true (default)", "folder, 0 workers", "shards, 0 workers"}
    assert all(r["images_per_s"] > 0 for r in results["data"])
    shards, folder = data["shards, 0 workers"], data["folder, 0 workers"]
    assert math.isclose(shards["vs_folder_rgb"], shards["rgb_images_per_s"] / folder["rgb_images_per_s"], rel_tol=1e-6)
    assert folder["vs_folder_lab"] == 1.0 and shards["vs_folder_lab"] > 0
    assert "peer" not in results  # no --peer-dir: the comparison with pix2pix is skipped
    assert results["epoch"]["epoch_wall_s"] > 0 and results["epoch"]["full_epoch_minutes_estimate"] > 0
    assert [r["mode"] for r in results["infer"]][:2] == ["full", "tiles"]

    report = (out / "RESULTS.md").read_text()
    for heading in ("Device limit", "Lab conversion", "Training step", "Data delivery", "Whole epoch", "Colorizing"):
        assert heading in report
    assert "shards deliver **" in report and "official pix2pix" not in report


def test_bench_reports_which_default_precision_auto_chose_and_why(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: Test Xeon\nflags\t\t: avx512f avx512_bf16\n")

    def xeon_like(names):  # bf16 slower than fp32, as measured on an Intel Xeon without AMX
        return {n: 0.050 if n.startswith("bf16") else 0.030 for n in names}

    choice = part_default_precision(
        torch.device("cpu"), timer=xeon_like, cpuinfo=cpuinfo, cache=tmp_path / "precision.json"
    )
    assert choice["precision"] == "32-true" and choice["source"] == "measured"
    step = [  # the step part, where it timed both precisions, is set beside the micro-benchmark
        {"model": "unet256", "variant": "channels_last", "images_per_s": 2.6},
        {"model": "unet256", "variant": "bf16-mixed+channels_last", "images_per_s": 1.8},
    ]
    hardware = {"date": "today", "cpu": "Test Xeon", "cpu_threads": 2, "torch": "x", "lightning": "y"}
    write_report({"hardware": hardware, "command": "test", "default_precision": choice, "step": step}, tmp_path)
    report = (tmp_path / "RESULTS.md").read_text()
    assert "## Default precision" in report and "`trainer.precision=auto` -> **32-true**" in report
    assert "50.0 ms vs channels_last 30.0 ms" in report  # the figures why
    assert "D + G step, unet256" in report and "| 0.692 |" in report  # 1.8 / 2.6: the steps agree
    assert json.loads((tmp_path / "results.json").read_text())["default_precision"]["precision"] == "32-true"


PEER_DIR = os.environ.get("COLORGAN_PEER_DIR")  # a checkout of junyanz/pytorch-CycleGAN-and-pix2pix


@pytest.mark.skipif(not PEER_DIR, reason="set COLORGAN_PEER_DIR to a pytorch-CycleGAN-and-pix2pix checkout")
def test_bench_times_the_official_colorization_step_against_ours(tmp_path):
    out = tmp_path / "bench"
    results = bench.main(["--quick", "--parts", "lab", "--peer-dir", str(PEER_DIR), "--out", str(out)])
    rows = {r["variant"]: r for r in results["peer"]["rows"]}
    assert list(rows) == ["fp32", "bf16-mixed", "default"]
    for row in rows.values():
        assert row["peer_images_per_s"] > 0 and row["colorgan_images_per_s"] > 0 and row["timed_steps_each"] == 1
        ratio = row["colorgan_images_per_s"] / row["peer_images_per_s"]
        assert math.isclose(row["colorgan_over_peer"], ratio, rel_tol=1e-6)
    assert "official pix2pix" in (out / "RESULTS.md").read_text()
    assert not Path("checkpoints").exists()  # the peer's option parser wrote nothing beside us


def run_gpu_script(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHON": sys.executable, "COLORGAN_BENCH_OUT": str(tmp_path / "out"), **env}
    return subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu.sh"), *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_gpu_script_refuses_without_cuda(tmp_path):
    proc = run_gpu_script(tmp_path)
    assert proc.returncode == 1 and "finds no CUDA GPU" in proc.stderr and "make bench" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_gpu_script_writes_its_report_from_the_bench(data_dir, tmp_path):
    """Its parts on the CPU, tiny: the same command line as on a GPU, the report where it says."""
    proc = run_gpu_script(tmp_path, "--quick", "--data-dir", str(data_dir), COLORGAN_BENCH_DEVICE="cpu")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = (tmp_path / "out" / "RESULTS-gpu.md").read_text()
    assert "fraction_of_bf16_matmul" in report and "shards, 0 workers" in report
    results = json.loads((tmp_path / "out" / "results-gpu.json").read_text())
    assert results["limit"]["matmul_bf16_gflops"] > 0 and "epoch" not in results
