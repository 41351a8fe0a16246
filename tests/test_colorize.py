"""colorgan-colorize: inputs found, outputs named, marked and never written over what it did not write."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from colorgan.apps.colorize import Job, UnsafeOutputPath, main, plan_outputs, safe_output_path
from colorgan.checkpoint import load_generator
from colorgan.data import images as image_files
from colorgan.inference import MODES, NonFiniteOutputError, colorize_image, colorize_images
from colorgan.train.build import train
from colorgan.train.module import ColorizationModule
from tests.conftest import HANG_GUARD_S, ROOT, smooth_images, train_overrides
from tests.places import unwritable_folder
from tests.test_inference import TINY_UNET, lightness, photo

pytestmark = pytest.mark.usefixtures("one_thread")


def save_checkpoint(generator_cfg: dict, path: Path) -> Path:
    """An untrained checkpoint laid out as train.py writes it (state_dict + hyper_parameters)."""
    torch.manual_seed(0)
    module = ColorizationModule(generator=generator_cfg, lambda_gan=0.0)
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(TINY_UNET, tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


def run_cli(*args: str | Path) -> int:
    return main([str(a) for a in args])


# ----------------------------------------------------------------------------- output names
def test_safe_output_path_refuses_names_that_leave_the_folder(tmp_path):
    out = tmp_path / "out"
    assert safe_output_path(out, "sub/a.png") == (out / "sub" / "a.png").resolve()
    for bad in ("../x.png", "sub/../../x.png", str(tmp_path / "x.png"), "", "."):
        with pytest.raises(UnsafeOutputPath):
            safe_output_path(out, bad)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    out.mkdir()
    (out / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafeOutputPath, match="outside"):
        safe_output_path(out, "link/a.png")


def test_plan_outputs_never_targets_an_input_and_keeps_names_apart(tmp_path):
    jobs = [
        Job(tmp_path / "a.jpg", Path("a.jpg")),
        Job(tmp_path / "a.png", Path("a.png")),
        Job(tmp_path / "b.tif", Path("sub/b.tif")),
        Job(tmp_path / "evil.png", Path("../evil.png")),
    ]
    plan = plan_outputs(jobs, tmp_path)
    root = tmp_path.resolve()
    assert plan[jobs[0]] == root / "a_jpg.png"  # a.png is an input
    assert plan[jobs[1]] == root / "a_png.png"  # so is a.png
    assert plan[jobs[2]] == root / "sub" / "b.png"
    assert isinstance(plan[jobs[3]], UnsafeOutputPath)
    other = plan_outputs(jobs[:2], tmp_path / "out")
    assert other[jobs[0]] == root / "out" / "a.png" and other[jobs[1]] == root / "out" / "a_png.png"


# ----------------------------------------------------------------------------- the command line
def write_mixed_folder(root: Path) -> dict[str, Image.Image]:
    """Every kind of input the CLI must read, and the upright 8-bit image each decodes to."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "nested" / "deeper").mkdir(parents=True)
    expected: dict[str, Image.Image] = {}

    gray = Image.fromarray(photo(45, 31, seed=1)).convert("L")
    gray.save(root / "gray.png")
    expected["gray.png"] = gray

    rgb = Image.fromarray(photo(60, 40, seed=2))
    rgb.save(root / "nested" / "colour.jpg", quality=95)
    expected["nested/colour.png"] = Image.open(root / "nested" / "colour.jpg").convert("RGB")

    alpha = np.tile(np.linspace(0, 255, 50, dtype=np.uint8), (30, 1))
    Image.fromarray(np.dstack([photo(50, 30, seed=3), alpha])).save(root / "rgba.png")
    expected["rgba.png"] = Image.fromarray(photo(50, 30, seed=3))

    palette = Image.fromarray(photo(37, 29, seed=4)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.save(root / "nested" / "palette.png")
    expected["nested/palette.png"] = palette.convert("RGB")

    deep = (np.linspace(0, 65535, 23 * 41).reshape(23, 41)).astype(np.uint16)
    Image.fromarray(deep).save(root / "nested" / "deeper" / "sixteen.png")
    expected["nested/deeper/sixteen.png"] = Image.fromarray((deep / 65535 * 255 + 0.5).astype(np.uint8))

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(photo(64, 24, seed=5)).save(root / "rotated.jpg", exif=exif.tobytes(), quality=95)
    expected["rotated.png"] = ImageOps.exif_transpose(Image.open(root / "rotated.jpg")).convert("RGB")
    return expected


def check_outputs(out: Path, expected: dict[str, Image.Image]) -> None:
    for name, source in expected.items():
        result = Image.open(out / name)
        assert result.size == source.size, name
        assert np.abs(lightness(result) - lightness(source)).max() <= 1.0, name


@pytest.mark.parametrize("mode", MODES)
def test_cli_colorizes_a_mixed_folder_and_skips_a_corrupt_file(ckpt, tmp_path, capsys, mode):
    src = tmp_path / "in"
    expected = write_mixed_folder(src)
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    before = {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}
    out = tmp_path / "out"

    code = run_cli(src, "--ckpt", ckpt, "--out", out, "--mode", mode, "--batch-size", "2", "--device", "cpu")

    err = capsys.readouterr().err
    assert code == 1
    assert "broken.jpg" in err and "1 failed" in err and f"colorized {len(expected)} of {len(expected) + 1}" in err
    check_outputs(out, expected)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.png")) == sorted(expected)
    assert Image.open(out / "rotated.png").size == (24, 64)  # upright: the EXIF rotation is applied
    rgba = Image.open(out / "rgba.png")
    assert rgba.mode == "RGBA"
    assert np.array_equal(np.asarray(rgba)[..., 3], np.asarray(Image.open(src / "rgba.png"))[..., 3])
    assert Image.open(out / "gray.png").mode == "RGB"
    assert before == {p: p.read_bytes() for p in before}  # inputs untouched


@pytest.mark.parametrize("mode", MODES)
def test_python_api_gives_the_pixels_the_cli_writes(ckpt, tmp_path, mode):
    """A script or web demo that decodes a file and calls colorize_image gets the CLI's pixels, alpha included."""
    src, out = tmp_path / "in", tmp_path / "out"
    write_mixed_folder(src)
    assert run_cli(src, "--ckpt", ckpt, "--out", out, "--mode", mode, "--device", "cpu") == 0
    generator, _ = load_generator(ckpt)
    for path in (p for p in src.rglob("*") if p.is_file()):
        written = np.asarray(Image.open(out / path.relative_to(src).with_suffix(".png")))
        decoded = image_files.decode_image(path).image
        for given in (decoded, np.asarray(decoded)):
            assert np.array_equal(np.asarray(colorize_image(generator, given, 32, mode)), written), path


def test_cli_names_for_files_and_globs(ckpt, tmp_path, capsys):
    src = tmp_path / "in"
    (src / "a" / "b").mkdir(parents=True)
    Image.fromarray(photo(20, 10)).save(src / "a" / "b" / "x.jpg")
    Image.fromarray(photo(12, 14)).save(src / "a" / "y.png")
    Image.fromarray(photo(9, 9)).save(src / "single.bmp")
    out = tmp_path / "out"
    code = run_cli(src / "a" / "**" / "*.jpg", src / "single.bmp", "--ckpt", ckpt, "--out", out, "--device", "cpu")
    assert code == 0, capsys.readouterr().err
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.png")) == ["b/x.png", "single.png"]


def test_cli_reports_missing_inputs_and_still_colorizes_the_rest(ckpt, tmp_path, capsys):
    Image.fromarray(photo(10, 10)).save(tmp_path / "ok.png")
    out = tmp_path / "out"
    code = run_cli(
        tmp_path / "ok.png", tmp_path / "nope.png", tmp_path / "none" / "*.jpg", "--ckpt", ckpt, "--out", out
    )
    err = capsys.readouterr().err
    assert code == 1 and "nope.png" in err and "*.jpg" in err and "2 failed" in err
    assert (out / "ok.png").is_file()


def digest(folder: Path) -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


def write_photo_folder(src: Path) -> dict[Path, str]:
    """Inputs whose output names meet them: a.png (-> a_png.png), b.jpg (-> b.png), sub/c.png; their digests."""
    (src / "sub").mkdir(parents=True)
    Image.fromarray(photo(20, 16, seed=1)).save(src / "a.png")
    Image.fromarray(photo(20, 16, seed=2)).save(src / "b.jpg")
    Image.fromarray(photo(20, 16, seed=3)).convert("L").save(src / "sub" / "c.png")
    return digest(src)


@pytest.mark.parametrize("out", ["the input folder", "."])
def test_cli_with_out_equal_to_the_input_folder_replaces_its_own_outputs(ckpt, tmp_path, capsys, monkeypatch, out):
    src = tmp_path / "photos"
    originals = write_photo_folder(src)
    if out == ".":
        monkeypatch.chdir(src)
    args = (".", "--ckpt", ckpt, "--out", ".") if out == "." else (src, "--ckpt", ckpt, "--out", src)
    outputs = {src / "a_png.png": "a.png", src / "b.png": "b.jpg", src / "sub" / "c_png.png": "sub/c.png"}
    for run in range(3):
        assert run_cli(*args, "--device", "cpu") == 0, capsys.readouterr().err
        assert "colorized 3 of 3" in capsys.readouterr().err, run
        after = digest(src)
        assert {p: after[p] for p in originals} == originals  # inputs untouched
        assert set(after) == set(originals) | set(outputs), run  # one output per input, replaced each run
    for path, source in outputs.items():
        assert Image.open(path).info["colorgan-colorize"] == source  # the mark that tells outputs apart


def test_cli_never_overwrites_a_file_it_did_not_write(ckpt, tmp_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    Image.fromarray(photo(12, 10, seed=1)).save(src / "a.jpg")
    Image.fromarray(photo(12, 10, seed=2)).save(out / "a.png")  # the user's own picture, no mark
    theirs = (out / "a.png").read_bytes()
    for _ in range(2):
        assert run_cli(src, "--ckpt", ckpt, "--out", out) == 0, capsys.readouterr().err
    assert (out / "a.png").read_bytes() == theirs
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "a_jpg.png"]


def test_cli_output_folder_inside_the_input_folder_is_not_read_back(ckpt, tmp_path, capsys):
    src = tmp_path / "photos"
    src.mkdir()
    for i in range(3):
        Image.fromarray(photo(16, 12, seed=i)).save(src / f"p{i}.png")
    out = src / "colorized"
    for _ in range(2):
        assert run_cli(src, "--ckpt", ckpt, "--out", out) == 0
        assert "colorized 3 of 3" in capsys.readouterr().err
    assert sorted(p.name for p in out.rglob("*.png")) == ["p0.png", "p1.png", "p2.png"]
    # the same through a glob; and an output folder that contains the input folder: outputs are never inputs
    assert run_cli(src / "*.png", "--ckpt", ckpt, "--out", out) == 0
    assert "colorized 3 of 3" in capsys.readouterr().err
    assert run_cli(src, "--ckpt", ckpt, "--out", tmp_path) == 0
    err = capsys.readouterr().err
    assert "colorized 3 of 3" in err and "3 earlier outputs" in err, err
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["p0.png", "p1.png", "p2.png"]


def test_cli_refuses_to_write_through_a_symlink_out_of_the_folder(ckpt, tmp_path, capsys):
    src = tmp_path / "in"
    (src / "link").mkdir(parents=True)
    Image.fromarray(photo(8, 8)).save(src / "link" / "a.png")
    Image.fromarray(photo(8, 8)).save(src / "b.png")
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "link").symlink_to(outside, target_is_directory=True)

    code = run_cli(src, "--ckpt", ckpt, "--out", out)
    err = capsys.readouterr().err
    assert code == 1 and "a.png" in err and "outside" in err
    assert list(outside.iterdir()) == []
    assert (out / "b.png").is_file()


def test_cli_errors_that_stop_the_run(ckpt, tmp_path, capsys):
    Image.fromarray(photo(8, 8)).save(tmp_path / "a.png")
    assert run_cli(tmp_path / "a.png", "--ckpt", tmp_path / "missing.ckpt", "--out", tmp_path / "o") == 1
    assert "missing.ckpt" in capsys.readouterr().err
    assert run_cli(tmp_path / "a.png", "--ckpt", ckpt, "--out", tmp_path / "o", "--batch-size", "0") == 1
    if not torch.cuda.is_available():
        assert run_cli(tmp_path / "a.png", "--ckpt", ckpt, "--out", tmp_path / "o", "--device", "cuda") == 1
        assert "CUDA" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the command gets as far as loading the model."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before --out was checked")

    monkeypatch.setattr("colorgan.apps.cli.load_generator", refuse)


def test_cli_checks_out_before_loading_the_model(ckpt, tmp_path, capsys, monkeypatch):
    Image.fromarray(photo(8, 8)).save(tmp_path / "a.png")
    no_model(monkeypatch)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    for out, words in ((a_file, "is a file"), (a_file / "sub", "is a file")):
        assert run_cli(tmp_path / "a.png", "--ckpt", ckpt, "--out", out) == 1
        err = capsys.readouterr().err
        assert str(out) in err and words in err and "Traceback" not in err, err
    locked = unwritable_folder(tmp_path)
    for out in (locked, locked / "new"):
        assert run_cli(tmp_path / "a.png", "--ckpt", ckpt, "--out", out) == 1
        err = capsys.readouterr().err
        assert str(out) in err and "cannot write" in err, err
    assert a_file.read_text() == "not a folder"


def test_cli_colorizes_a_jpeg_above_the_pixel_cap_at_reduced_scale(ckpt, tmp_path, capsys, monkeypatch):
    Image.fromarray(photo(200, 150)).save(tmp_path / "big.jpg", quality=90)
    monkeypatch.setattr(image_files, "MAX_DECODED_PIXELS", 10_000)  # 30,000 pixels: above it, half of it fits
    out = tmp_path / "out"
    assert run_cli(tmp_path / "big.jpg", "--ckpt", ckpt, "--out", out) == 0
    err = capsys.readouterr().err
    assert "1/2 scale" in err and "save it as JPEG" not in err, err
    assert Image.open(out / "big.png").size == (100, 75)


@pytest.mark.slow
def test_entry_points_and_module_run():
    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    assert scripts.get("colorgan-colorize") == "colorgan.apps.colorize:main"
    assert scripts.get("colorgan-export") == "colorgan.apps.export:main"
    done = subprocess.run(
        [sys.executable, "-m", "colorgan.apps.colorize", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )
    assert done.returncode == 0 and "--ckpt" in done.stdout and ".png" in done.stdout


# ----------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_train_colorize_evaluate(make_cfg, tmp_path, capsys):
    from colorgan.evaluate.evaluator import evaluate  # imported here: the other tests do not need it

    summary = train(make_cfg(train_overrides("cifar_pretrain", "trainer.max_epochs=1"), output_dir=tmp_path / "run"))
    trained = summary["last_checkpoint"]

    src = tmp_path / "photos"
    expected = write_mixed_folder(src)
    for i, img in enumerate(smooth_images(3, 48, seed=7)):
        Image.fromarray(img).save(src / f"smooth_{i}.png")
        expected[f"smooth_{i}.png"] = Image.fromarray(img)
    for mode in MODES:
        out = tmp_path / f"out_{mode}"
        assert run_cli(src, "--ckpt", trained, "--out", out, "--mode", mode, "--device", "cpu") == 0
        check_outputs(out, expected)
        assert f"colorized {len(expected)} of {len(expected)}" in capsys.readouterr().err

    report = evaluate(
        make_cfg([f"ckpt_path={trained}", "device=cpu"], config_name="eval", output_dir=tmp_path / "eval")
    )
    written = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert set(written["models"]) == {"gray", "run/last"} == set(report["models"])
    assert np.isfinite(written["models"]["run/last"]["psnr"])


def test_cli_never_writes_into_the_model_folder_it_reads(tmp_path, capsys, monkeypatch):
    Image.fromarray(photo(8, 8)).save(tmp_path / "a.png")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"format": "colorgan-generator"}')
    no_model(monkeypatch)
    for out in (model, model / "colorized"):
        assert run_cli(tmp_path / "a.png", "--ckpt", model, "--out", out) == 1
        err = capsys.readouterr().err
        assert f"--out {out} is inside the model folder --ckpt {model}" in err, err
    assert [p.name for p in model.iterdir()] == ["config.json"]


class NaNOnBright(torch.nn.Module):
    """A generator whose prediction overflows (NaN) for bright images and is gray for the rest."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.zeros(()))

    def forward(self, L: torch.Tensor) -> torch.Tensor:
        ab = torch.zeros_like(L).repeat(1, 2, 1, 1) * self.scale
        bright = (L.flatten(1).mean(1) > 0.5).view(-1, 1, 1, 1)
        return torch.where(bright, torch.full_like(ab, float("nan")), ab)


@pytest.mark.parametrize("mode", MODES)
def test_a_prediction_that_is_not_finite_fails_naming_the_input_and_writes_nothing(tmp_path, capsys, monkeypatch, mode):
    monkeypatch.setattr("colorgan.apps.cli.load_generator", lambda *a, **k: (NaNOnBright(), {"generator": {}}))
    src = tmp_path / "in"
    src.mkdir()
    Image.new("RGB", (40, 30), (250, 250, 250)).save(src / "bright.png")
    Image.new("RGB", (40, 30), (20, 40, 60)).save(src / "dark.png")
    out = tmp_path / "out"
    assert run_cli(src, "--ckpt", "model.ckpt", "--out", out, "--size", "32", "--mode", mode) == 1
    err = capsys.readouterr().err
    assert f"skipped {src / 'bright.png'}: the generator predicted NaN or Inf" in err, err
    assert sorted(p.name for p in out.iterdir()) == ["dark.png"]
    with pytest.raises(NonFiniteOutputError) as raised:
        colorize_images(NaNOnBright(), [Image.open(src / "dark.png"), Image.open(src / "bright.png")], 32, mode)
    assert raised.value.index == 1


def test_what_a_kill_left_is_never_read_and_the_next_write_removes_it(ckpt, tmp_path, capsys):
    gone = subprocess.Popen(["true"])
    gone.wait()
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(photo(40, 30)).save(src / "a.png")
    half = src / f".b.png.{gone.pid}.tmp.png"  # a killed colorize (or save) wrote half of b.png
    half.write_bytes((src / "a.png").read_bytes()[:60])
    out = tmp_path / "out"
    out.mkdir()
    stale, busy = out / f".a.png.{gone.pid}.tmp.png", out / f".c.png.{os.getppid()}.tmp.png"
    for left in (stale, busy):
        left.write_bytes(b"half an image")
    assert run_cli(src, "--ckpt", ckpt, "--out", out) == 0
    assert "colorized 1 of 1 inputs" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [busy.name, "a.png"]  # a writer still alive keeps its file
    assert image_files.find_images(src) == [src / "a.png"]
