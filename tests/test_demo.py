"""colorgan-demo: an upload becomes the very PNG colorgan-colorize writes, checked in a real browser too."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from colorgan.apps import demo
from colorgan.apps.colorize import main as colorize_main
from colorgan.apps.demo import colorize_upload, samples_colours
from colorgan.apps.demo import main as demo_main
from colorgan.checkpoint import load_generator
from colorgan.data import images as image_files
from colorgan.data.images import BadImageError
from tests.conftest import HANG_GUARD_S, ROOT
from tests.test_colorize import TINY_UNET, photo, save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")
NO_DEMO_EXTRA = 'the demo extra (gradio, playwright) is not installed: pip install -e ".[demo]"'
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"  # Debian's package; nothing is downloaded


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(TINY_UNET, tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


def cli_png(source: Path, ckpt: Path, out: Path, mode: str = "full") -> bytes:
    """The PNG colorgan-colorize writes for ``source``."""
    assert colorize_main([str(source), "--ckpt", str(ckpt), "--out", str(out), "--mode", mode, "--device", "cpu"]) == 0
    return (out / f"{source.stem}.png").read_bytes()


def write_photo(path: Path, kind: str, width: int = 97, height: int = 64) -> Path:
    rgb = photo(width, height)
    if kind == "rgba":
        image = Image.fromarray(np.dstack([rgb, np.linspace(0, 255, width, dtype=np.uint8)[None].repeat(height, 0)]))
    elif kind == "gray16":
        image = Image.fromarray(rgb[..., 0].astype(np.uint16) * 257)
    else:
        image = Image.fromarray(rgb)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


# ----------------------------------------------------------------------------- the page's colorizing step
@pytest.mark.parametrize("kind", ["rgb", "rgba", "gray16"])
@pytest.mark.parametrize("mode", ["full", "tiles"])
def test_upload_gives_the_cli_png(ckpt, tmp_path, kind, mode):
    source = write_photo(tmp_path / "upload" / "photo.png", kind)
    generator, _ = load_generator(ckpt)
    result = colorize_upload(source, generator, 32, mode, None, tmp_path)
    assert result.colour.read_bytes() == cli_png(source, ckpt, tmp_path / "cli", mode)
    assert result.note is None
    with Image.open(result.gray) as gray, Image.open(result.colour) as colour:
        assert gray.size == colour.size == (97, 64)
        assert gray.mode == colour.mode == ("RGBA" if kind == "rgba" else "RGB")
        rgb = np.asarray(gray.convert("RGB"), dtype=np.int16)
        assert np.abs(rgb - rgb[..., :1]).max() <= 1  # no colour, only the photo's L


def test_unreadable_upload_gets_the_cli_message(ckpt, tmp_path, capsys):
    bad = tmp_path / "upload" / "notes.png"
    bad.parent.mkdir()
    bad.write_text("a shopping list, not a picture\n")
    generator, _ = load_generator(ckpt)
    with pytest.raises(BadImageError) as caught:
        colorize_upload(bad, generator, 32, "full", None, tmp_path)
    assert str(caught.value) == f"cannot read image notes.png: {caught.value.reason}"  # the name the person knows
    assert colorize_main([str(bad), "--ckpt", str(ckpt), "--out", str(tmp_path / "cli")]) == 1
    assert f"cannot read image {bad}: {caught.value.reason}" in capsys.readouterr().err
    assert "not an image" in caught.value.reason


def test_huge_jpeg_upload_gets_the_cli_note(ckpt, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(image_files, "MAX_DECODED_PIXELS", 2_000)  # 97 x 64 is decoded at 1/2 scale
    source = tmp_path / "upload" / "photo.jpg"
    source.parent.mkdir()
    Image.fromarray(photo(97, 64)).save(source, quality=95)
    result = colorize_upload(source, load_generator(ckpt)[0], 32, "full", None, tmp_path)
    assert result.colour.read_bytes() == cli_png(source, ckpt, tmp_path / "cli")
    assert result.note == "photo.jpg holds more than the 0.002 MP decoded at once; colorized at 1/2 scale, 49 x 32"
    assert result.note.replace("photo.jpg", str(source)) in capsys.readouterr().err


def test_seed_picks_the_sample_of_a_generator_with_noise(tmp_path):
    noisy = save_checkpoint({**TINY_UNET, "noise_channels": 2, "noise": "vector"}, tmp_path / "noisy.ckpt")
    assert not samples_colours(load_generator(noisy)[0])  # z = 0 unless asked: the page shows no seed
    generator, _ = load_generator(noisy, stochastic=True)
    assert samples_colours(generator)
    source = write_photo(tmp_path / "photo.png", "rgb")

    def sample(seed: int) -> bytes:
        folder = tmp_path / f"seed_{seed}_{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        return colorize_upload(source, generator, 32, "full", seed, folder).colour.read_bytes()

    assert sample(3) == sample(3)
    assert sample(3) != sample(4)


def test_command_refuses_a_file_that_is_no_checkpoint(tmp_path, capsys):
    if importlib.util.find_spec("gradio") is None:  # the command asks for it first
        pytest.skip(NO_DEMO_EXTRA)
    notes = tmp_path / "notes.ckpt"
    notes.write_text("not a checkpoint\n")
    assert demo_main(["--ckpt", str(notes)]) == 1
    assert f"colorgan-demo: error: {notes} is not a checkpoint" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the page in a browser
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo_url(ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``colorgan-demo`` serving the tiny checkpoint on a free local port, as a user starts it."""
    pytest.importorskip("gradio", reason=NO_DEMO_EXTRA)
    pytest.importorskip("playwright.sync_api", reason=NO_DEMO_EXTRA)
    if not Path(CHROMIUM).is_file():
        pytest.skip("no chromium: apt-get install chromium")
    folder = tmp_path_factory.mktemp("demo")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "GRADIO_TEMP_DIR": str(folder / "gradio")}
    command = [sys.executable, "-m", "colorgan.apps.demo", "--ckpt", str(ckpt), "--port", str(port), "--device", "cpu"]
    with open(folder / "demo.log", "w") as log:
        server = subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + HANG_GUARD_S
        while not answers(url):
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"colorgan-demo did not start:\n{(folder / 'demo.log').read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=120)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.mark.slow
def test_page_colorizes_an_upload_like_the_cli(demo_url, ckpt, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    source = write_photo(tmp_path / "photo.png", "rgb")
    bad = tmp_path / "notes.png"
    bad.write_text("a shopping list, not a picture\n")
    expected = {mode: cli_png(source, ckpt, tmp_path / mode, mode) for mode in ("full", "tiles")}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page()
            local = ("http://127.0.0.1", "data:", "blob:")  # nothing leaves this machine
            page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(local) else r.abort())
            # waits end when the page shows the result; the time limit is a hang guard (expect's default is 5 s)
            page.set_default_timeout(HANG_GUARD_S * 1000)
            expect.set_options(timeout=HANG_GUARD_S * 1000)

            page.goto(demo_url)
            page.set_input_files("#photo input[type=file]", bad)
            expect(page.get_by_text("cannot read image notes.png: not an image")).to_be_visible()
            assert page.request.get(demo_url).ok  # the server goes on serving, and so does the page:

            page.locator("#photo").get_by_role("button", name="Clear").click()
            page.set_input_files("#photo input[type=file]", source)
            shown = page.locator("#colorized img")
            expect(shown).to_have_attribute("src", re.compile(r"/photo_colorized\.png$"))
            assert shown.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [97, 64]
            assert page.request.get(shown.get_attribute("src")).body() == expected["full"]
            with page.expect_download() as download:
                page.locator("#download").click()
            assert download.value.suggested_filename == "photo_colorized.png"
            assert Path(download.value.path()).read_bytes() == expected["full"]

            first = shown.get_attribute("src")
            page.locator("#mode").get_by_text("tiles").click()
            expect(shown).not_to_have_attribute("src", first)
            assert page.request.get(shown.get_attribute("src")).body() == expected["tiles"]
            expect(page.locator("#slider img")).to_have_count(2)
        finally:
            browser.close()


def test_command_names_a_damaged_model_folder(tmp_path, capsys):
    if importlib.util.find_spec("gradio") is None:  # the command asks for it first
        pytest.skip(NO_DEMO_EXTRA)
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"format": "colorgan-generator", "generator": ["unet"]}')
    assert demo_main(["--ckpt", str(folder)]) == 1
    err = capsys.readouterr().err
    assert f"colorgan-demo: error: {folder / 'config.json'}: " in err and '"generator" is not an object' in err, err


# ----------------------------------------------------------------------------- pixels per upload
def test_an_upload_above_the_pages_cap_is_refused_before_it_is_decoded(ckpt, tmp_path, monkeypatch):
    source = write_photo(tmp_path / "upload" / "photo.png", "rgb")  # 97 x 64 = 6208 pixels
    generator, _ = load_generator(ckpt)
    folder = tmp_path / "out"
    folder.mkdir()
    decoded: list[Path] = []
    monkeypatch.setattr(demo, "decode_image", lambda path: decoded.append(path) or image_files.decode_image(path))
    with pytest.raises(BadImageError) as caught:
        colorize_upload(source, generator, 32, "tiles", None, folder, max_pixels=6207)
    assert str(caught.value).startswith(
        "cannot read image photo.png: 97 x 64 pixels is more than the 0.006207 MP this page colorizes per photo "
        "(colorgan-demo --max-megapixels)"
    )
    assert not decoded and not list(folder.iterdir())
    assert colorize_upload(source, generator, 32, "full", None, folder, max_pixels=6208).colour.is_file()


def test_the_pages_default_cap_is_well_below_the_commands():
    assert demo.DEFAULT_MAX_PIXELS * 10 <= image_files.MAX_DECODED_PIXELS


def test_the_page_shows_the_refusal(ckpt, tmp_path):
    gr = pytest.importorskip("gradio", reason=NO_DEMO_EXTRA)
    source = write_photo(tmp_path / "photo.png", "rgb")
    app = demo.build_app(load_generator(ckpt)[0], 32, [], max_pixels=1000)
    run = next(f.fn for f in app.fns.values() if f.name == "run")
    with pytest.raises(gr.Error, match=r"photo\.png: 97 x 64 pixels is more than the 0\.001 MP this page colorizes"):
        run(str(source), "full", 0)


class FakeApp:
    def launch(self, **kwargs: object) -> None:
        pass


@pytest.mark.parametrize(("args", "expected"), [([], 12_000_000), (["--max-megapixels", "2.5"], 2_500_000)])
def test_the_command_gives_the_page_its_cap(ckpt, monkeypatch, args, expected):
    if importlib.util.find_spec("gradio") is None:  # the command asks for it first
        pytest.skip(NO_DEMO_EXTRA)
    given: list[int] = []
    monkeypatch.setattr(
        demo, "build_app", lambda generator, size, examples, max_pixels: given.append(max_pixels) or FakeApp()
    )
    assert demo_main(["--ckpt", str(ckpt), "--device", "cpu", *args]) == 0
    assert given == [expected]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--max-megapixels", "0"], "--max-megapixels must be in (0, 150] (colorgan-colorize's cap), got 0.0"),
        (["--max-megapixels", "500"], "--max-megapixels must be in (0, 150] (colorgan-colorize's cap), got 500.0"),
        (["--size", "8"], "--size gives a model side of 8 pixels; it must be 16..2048"),
    ],
)
def test_the_command_refuses_caps_and_sizes_out_of_range(ckpt, capsys, args, words):
    assert demo_main(["--ckpt", str(ckpt), *args]) == 1
    assert f"colorgan-demo: error: {words}" in capsys.readouterr().err


def test_the_pages_temperature_changes_a_classification_models_colours(tmp_path):
    pytest.importorskip("gradio", reason=NO_DEMO_EXTRA)
    bins = save_checkpoint({**TINY_UNET, "head": "classification"}, tmp_path / "bins.ckpt")
    source = write_photo(tmp_path / "photo.png", "rgb")
    app = demo.build_app(load_generator(bins)[0], 32, [])
    run = next(f.fn for f in app.fns.values() if f.name == "run")
    vivid, mean = (np.asarray(Image.open(run(str(source), "full", 0, t)[1])) for t in (0.05, 1.0))
    assert not np.array_equal(vivid, mean)
    plain = demo.build_app(load_generator(save_checkpoint(TINY_UNET, tmp_path / "plain.ckpt"))[0], 32, [])
    slider = next(b for b in plain.blocks.values() if getattr(b, "elem_id", None) == "temperature")
    assert slider.visible is False  # a regression model has no temperature to set
