"""The benchmark runs end to end on tiny settings and writes well-formed results (no timing asserts)."""

from __future__ import annotations

import json
import math

from colorgan import bench


def test_quick_benchmark_writes_results(data_dir, tmp_path):
    out = tmp_path / "bench"
    bench.main(["--quick", "--data-dir", str(data_dir), "--out", str(out), "--epoch-fraction", "0.5"])
    results = json.loads((out / "results.json").read_text())
    assert set(bench.PARTS) <= set(results)
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

    assert {r["data"] for r in results["data"]} >= {"cifar10 on_device=true (default)", "folder, 0 workers"}
    assert all(r["images_per_s"] > 0 for r in results["data"])
    assert results["epoch"]["epoch_wall_s"] > 0 and results["epoch"]["full_epoch_minutes_estimate"] > 0
    assert [r["mode"] for r in results["infer"]][:2] == ["full", "tiles"]

    report = (out / "RESULTS.md").read_text()
    for heading in ("Device limit", "Lab conversion", "Training step", "Data delivery", "Whole epoch", "Colorizing"):
        assert heading in report
