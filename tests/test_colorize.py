"""colorgan-colorize and its Python API: any size and mode of image in, its own L plus colour out."""

from __future__ import annotations

import hashlib
import itertools
import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps
from skimage.color import rgb2lab
from torch import nn

from colorgan.color import lab_normalized_to_rgb, rgb_to_lab_normalized, to_uint8
from colorgan.colorize import (
    MODES,
    Job,
    UnsafeOutputPath,
    colorize_image,
    colorize_images,
    keep_lightness_rgb,
    main,
    plan_outputs,
    safe_output_path,
    window_starts,
)
from colorgan.data import images as image_files
from colorgan.models import build_generator
from colorgan.module import ColorizationModule
from colorgan.training import train
from tests.conftest import ROOT, smooth_images, train_overrides
from tests.places import unwritable_folder

TINY_UNET = {"name": "unet", "image_size": 32, "ngf": 8}

pytestmark = pytest.mark.usefixtures("one_thread")


def lightness(image: Image.Image) -> np.ndarray:
    """L* of an image by scikit-image, independent of colorgan's own conversion."""
    return rgb2lab(np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0)[..., 0]


def chroma(image: Image.Image) -> np.ndarray:
    ab = rgb2lab(np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0)[..., 1:]
    return np.hypot(ab[..., 0], ab[..., 1])


def photo(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A colourful H x W x 3 uint8 picture: smooth gradients plus some noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx / max(width, 1), yy / max(height, 1), 0.5 + 0.5 * np.sin(xx / 7.0)], axis=-1)
    noisy = base * 200 + rng.integers(0, 55, size=(height, width, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8)


class StrongColors(nn.Module):
    """A per-pixel 'generator' with saturated, mostly out-of-gamut ab: the hard case for keeping L."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(0.95))
        self.calls: list[tuple[int, ...]] = []

    def forward(self, L: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(L.shape))
        return torch.cat([torch.sin(7 * L), torch.cos(5 * L)], dim=1) * self.scale


class Recording(nn.Module):
    """Wraps a generator and records the shape of every batch it is given."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls: list[tuple[int, ...]] = []

    def forward(self, L: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(L.shape))
        return self.inner(L)


def save_checkpoint(generator_cfg: dict, path: Path) -> Path:
    """An untrained checkpoint laid out as train.py writes it (state_dict + hyper_parameters)."""
    torch.manual_seed(0)
    module = ColorizationModule(generator=generator_cfg, lambda_gan=0.0)
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(TINY_UNET, tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


@pytest.fixture(scope="module")
def unet() -> nn.Module:
    torch.manual_seed(0)
    return build_generator(TINY_UNET).eval()


def run_cli(*args: str | Path) -> int:
    return main([str(a) for a in args])


# ----------------------------------------------------------------------------- the Python API
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("width", "height"), [(1, 1), (517, 33), (40, 600), (97, 64)])
def test_any_size_keeps_size_and_lightness(unet, mode, width, height):
    rgb = Image.fromarray(photo(width, height))
    for image in (rgb, rgb.convert("L")):
        out = colorize_image(unet, image, 32, mode)
        assert out.size == image.size and out.mode == "RGB"
        assert np.abs(lightness(out) - lightness(image)).max() <= 1.0


@pytest.mark.parametrize("mode", MODES)
def test_saturated_predictions_do_not_change_lightness(mode):
    image = Image.fromarray(photo(90, 70, seed=3))
    L, _ = rgb_to_lab_normalized(torch.from_numpy(np.array(image)).permute(2, 0, 1)[None])
    clipped = to_uint8(lab_normalized_to_rgb(L, StrongColors()(L)))[0].permute(1, 2, 0).numpy()
    assert np.abs(lightness(Image.fromarray(clipped)) - lightness(image)).max() > 5  # plain clipping moves L

    out = colorize_image(StrongColors(), image, 32, mode)
    assert np.abs(lightness(out) - lightness(image)).max() <= 1.0
    assert chroma(out).mean() > 20  # the colour is reduced only as far as needed, not dropped


def test_keep_lightness_rgb_leaves_in_gamut_colours_alone():
    L = torch.linspace(-0.8, 0.8, 50).view(1, 1, 5, 10)
    ab = torch.full((1, 2, 5, 10), 0.05)
    torch.testing.assert_close(keep_lightness_rgb(L, ab), lab_normalized_to_rgb(L, ab))


def test_full_mode_at_the_model_size_is_the_plain_prediction():
    image = Image.fromarray(photo(32, 32, seed=1))
    L, _ = rgb_to_lab_normalized(torch.from_numpy(np.array(image)).permute(2, 0, 1)[None])
    gen = StrongColors()
    expected = to_uint8(keep_lightness_rgb(L, gen(L)))[0].permute(1, 2, 0).numpy().astype(int)
    for mode in MODES:
        got = np.asarray(colorize_image(gen, image, 32, mode)).astype(int)
        assert np.abs(got - expected).max() <= 1


def test_tiles_blend_to_the_full_resolution_prediction():
    """With a per-pixel model the windows agree, so blending must reproduce the prediction exactly."""
    image = Image.fromarray(photo(100, 77, seed=2))
    L, _ = rgb_to_lab_normalized(torch.from_numpy(np.array(image)).permute(2, 0, 1)[None])
    gen = StrongColors()
    expected = to_uint8(keep_lightness_rgb(L, gen(L)))[0].permute(1, 2, 0).numpy().astype(int)
    gen.calls.clear()
    got = np.asarray(colorize_image(gen, image, 32, "tiles", batch_size=4, overlap=0.25)).astype(int)
    assert np.abs(got - expected).max() <= 1
    windows = len(window_starts(77, 32, 24)) * len(window_starts(100, 32, 24))
    assert [c[0] for c in gen.calls] == [4] * (windows // 4) + ([windows % 4] if windows % 4 else [])
    assert all(c[1:] == (1, 32, 32) for c in gen.calls)


def test_window_starts_cover_the_image_with_the_overlap():
    for length in (1, 31, 32, 33, 100, 517):
        starts = window_starts(length, min(32, length), 24)
        assert starts[0] == 0 and starts[-1] + min(32, length) == length
        assert all(0 < b - a <= 24 for a, b in itertools.pairwise(starts))


def test_full_mode_batches_images_and_never_runs_the_model_at_full_size(unet):
    recording = Recording(unet)
    images = [Image.fromarray(photo(w, h)) for w, h in ((1200, 900), (50, 20), (1, 1), (33, 517), (64, 64))]
    outs = colorize_images(recording, images, 32, "full", batch_size=2)
    assert recording.calls == [(2, 1, 32, 32), (2, 1, 32, 32), (1, 1, 32, 32)]
    assert [o.size for o in outs] == [i.size for i in images]


def test_alpha_and_modes_of_in_memory_images(unet):
    rgba = np.dstack([photo(30, 20), np.random.default_rng(0).integers(0, 256, (20, 30), dtype=np.uint8)])
    out = colorize_image(unet, Image.fromarray(rgba), 32)
    assert out.mode == "RGBA" and np.array_equal(np.asarray(out)[..., 3], rgba[..., 3])

    gray16 = (np.arange(20 * 30, dtype=np.uint16).reshape(20, 30) * 100).astype(np.uint16)
    out16 = colorize_image(unet, Image.fromarray(gray16), 32)
    expected = Image.fromarray((gray16 / 65535 * 255 + 0.5).astype(np.uint8))
    assert out16.size == (30, 20)
    assert np.abs(lightness(out16) - lightness(expected)).max() <= 1.0


def test_bad_arguments_are_refused(unet):
    image = Image.new("L", (8, 8))
    with pytest.raises(ValueError, match="mode"):
        colorize_image(unet, image, 32, "mosaic")
    with pytest.raises(ValueError, match="size"):
        colorize_image(unet, image, 0)
    with pytest.raises(ValueError, match="overlap"):
        colorize_image(unet, image, 32, "tiles", overlap=1.0)


@settings(max_examples=30, deadline=None)
@given(width=st.integers(1, 80), height=st.integers(1, 80), mode=st.sampled_from(MODES))
def test_property_output_has_the_input_size_and_lightness(unet, width, height, mode):
    image = Image.fromarray(photo(width, height, seed=width * 100 + height)).convert("L")
    out = colorize_image(unet, image, 32, mode)
    assert out.size == (width, height)
    assert np.abs(lightness(out) - lightness(image)).max() <= 1.0


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
    assert run_cli(tmp_path / "a.png", "--ckpt", tmp_path / "missing.ckpt", "--out", tmp_path / "o") == 2
    assert "missing.ckpt" in capsys.readouterr().err
    assert run_cli(tmp_path / "a.png", "--ckpt", ckpt, "--out", tmp_path / "o", "--batch-size", "0") == 2
    if not torch.cuda.is_available():
        assert run_cli(tmp_path / "a.png", "--ckpt", ckpt, "--out", tmp_path / "o", "--device", "cuda") == 2
        assert "CUDA" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the command gets as far as loading the model."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before --out was checked")

    monkeypatch.setattr("colorgan.colorize.load_generator", refuse)


def test_cli_checks_out_before_loading_the_model(ckpt, tmp_path, capsys, monkeypatch):
    Image.fromarray(photo(8, 8)).save(tmp_path / "a.png")
    no_model(monkeypatch)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    for out, words in ((a_file, "is a file"), (a_file / "sub", "is a file")):
        assert run_cli(tmp_path / "a.png", "--ckpt", ckpt, "--out", out) == 2
        err = capsys.readouterr().err
        assert str(out) in err and words in err and "Traceback" not in err, err
    locked = unwritable_folder(tmp_path)
    for out in (locked, locked / "new"):
        assert run_cli(tmp_path / "a.png", "--ckpt", ckpt, "--out", out) == 2
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
    assert scripts.get("colorgan-colorize") == "colorgan.colorize:main"
    assert scripts.get("colorgan-export") == "colorgan.export:main"
    done = subprocess.run(
        [sys.executable, "-m", "colorgan.colorize", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and "--ckpt" in done.stdout and ".png" in done.stdout


# ----------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_train_colorize_evaluate(make_cfg, tmp_path, capsys):
    from colorgan.evaluation import evaluate  # imported here: the other tests do not need it

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
