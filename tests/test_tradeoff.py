"""The PSNR-versus-colourfulness figure: one curve per classification model, points for the others."""

from __future__ import annotations

import json

from PIL import Image

from colorgan.evaluate.tradeoff import main, read_points


def report(path, models):
    rows = {name: {"psnr": p, "colorfulness": c, "probe_gap": g} for name, (p, c, g) in models.items()}
    path.write_text(json.dumps({"models": rows, "ground_truth": {"colorfulness": 33.6, "probe_accuracy": 0.86}}))
    return path


def test_temperature_rows_become_one_curve_and_the_figure_is_drawn(tmp_path):
    a = report(tmp_path / "a.json", {"gray": (24.8, 0.1, 0.0), "l1/last": (25.2, 13.0, 0.05)})
    b = report(
        tmp_path / "b.json",
        {"gray": (24.8, 0.1, 0.0), "cls/last@T=0.38": (24.5, 26.0, 0.3), "cls/last@T=1": (25.3, 15.0, 0.2)},
    )
    models, gray, truth = read_points([a, b])
    assert set(models) == {"l1/last", "cls/last"}
    assert sorted(t for t, _ in models["cls/last"]) == [0.38, 1.0]
    assert gray["psnr"] == 24.8 and truth["colorfulness"] == 33.6
    out = tmp_path / "tradeoff.png"
    assert main([str(a), str(b), "--out", str(out), "--label", "cls/last=colourful"]) == 0
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width > image.height > 100


def test_a_missing_report_is_named(tmp_path, capsys):
    assert main([str(tmp_path / "nope.json"), "--out", str(tmp_path / "x.png")]) == 1
    assert "nope.json" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
