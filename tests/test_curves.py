"""python -m colorgan.runs.curves: validation curves of run folders."""

from __future__ import annotations

from PIL import Image

from colorgan.runs.curves import main, read_epoch_metrics


def write_metrics(run, rows: list[dict[str, str]]) -> None:
    (run / "csv").mkdir(parents=True)
    header = ["epoch", "step", "train/g_l1_step", "val/psnr_gain", "val/realism"]
    lines = [",".join(header)] + [",".join(r.get(h, "") for h in header) for r in rows]
    (run / "csv" / "metrics.csv").write_text("\n".join(lines) + "\n")


def test_curves_read_one_value_per_epoch_and_plot_them(tmp_path):
    run = tmp_path / "cifar_gan"
    write_metrics(
        run,
        [
            {"epoch": "0", "step": "10", "train/g_l1_step": "0.1"},
            {"epoch": "0", "step": "20", "val/psnr_gain": "-0.5", "val/realism": "2.0"},
            {"epoch": "1", "step": "40", "val/psnr_gain": "0.25", "val/realism": "1.5"},
        ],
    )
    series = read_epoch_metrics(run)
    assert series["val/psnr_gain"] == [(0, -0.5), (1, 0.25)] and "train/g_l1_step" not in series
    assert main([str(run), "--out", str(tmp_path / "c.png")]) == 0
    with Image.open(tmp_path / "c.png") as image:
        assert image.width > 2 * image.height  # one panel per metric found


def test_a_folder_without_metrics_is_named(tmp_path, capsys):
    assert main([str(tmp_path / "nothing"), "--out", str(tmp_path / "c.png")]) == 1
    assert "nothing/csv/metrics.csv not found" in capsys.readouterr().err


def test_a_grid_saved_as_jpg_is_a_jpeg(tmp_path):
    from colorgan.files import save_image_atomic

    image = Image.new("RGB", (64, 32), "red")
    with Image.open(save_image_atomic(image, tmp_path / "grid.jpg")) as saved:
        assert saved.format == "JPEG"
    with Image.open(save_image_atomic(image, tmp_path / "grid.png")) as saved:
        assert saved.format == "PNG"


def test_grid_titles_fit_their_columns():
    from PIL import ImageDraw

    from colorgan.evaluate.sample_grid import fit_title

    draw = ImageDraw.Draw(Image.new("RGB", (10, 10)))
    assert fit_title(draw, "gray", 120) == "gray"
    assert fit_title(draw, "cifar_gan_l3000/epoch_003", 100) == "cifar_gan_l3000"
    short = fit_title(draw, "a_very_long_run_folder_name_indeed/last", 60)
    assert short.endswith("...") and draw.textlength(short) <= 60
