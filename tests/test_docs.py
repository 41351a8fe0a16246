"""The README and docs/ keep telling the truth about the code, in seconds and without training.

* README.md stays a front page: at most 300 lines.
* Every relative link (and ``#anchor``) in README.md and docs/*.md points to a file (and heading) that exists.
* Every ``python -m MODULE`` names an importable module.
* Every ``python train.py ...``, ``python evaluate.py ...`` and ``python -m colorgan.evaluate.probe train ...``
  (fenced shell blocks and inline code) composes with Hydra: a typo'd experiment, group or key fails.
* Every option given to ``colorgan-colorize``, ``colorgan-export``, ``colorgan-demo`` and the ``python -m``
  programs exists in that program's argparse parser.
* The imports of the Python examples resolve.
* docs/architecture.md has a row for every ``.py`` file under colorgan/, and its import rule holds.
"""

from __future__ import annotations

import argparse
import ast
import functools
import importlib
import importlib.util
import itertools
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
PACKAGE = ROOT / "colorgan"
README = ROOT / "README.md"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
MAX_README_LINES = 300

APPS = {  # the console scripts of pyproject.toml and the modules that build their parsers
    "colorgan-colorize": "colorgan.apps.colorize",
    "colorgan-export": "colorgan.apps.export",
    "colorgan-demo": "colorgan.apps.demo",
}
HYDRA_SCRIPTS = {"train.py": "train", "evaluate.py": "eval"}
PROBE = "colorgan.evaluate.probe"  # python -m colorgan.evaluate.probe train [overrides]: conf/probe.yaml
SHELL_LANGS = {"", "bash", "sh", "shell", "console"}
# The core (colorgan/*.py), and data/ and models/ below it, never import the jobs built on them.
FOUNDATION = [*PACKAGE.glob("*.py"), *(PACKAGE / "data").rglob("*.py"), *(PACKAGE / "models").rglob("*.py")]
JOBS = ("apps", "train", "evaluate", "runs", "bench")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str


@dataclass(frozen=True)
class Command:
    page: Path
    line: int
    text: str  # the command as written (continuations joined, comment removed)

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def split_fences(text: str) -> tuple[list[tuple[int, str, str]], str]:
    """The fenced blocks (line, language, body) and the page's prose with every block blanked out."""
    blocks, prose, body, lang, start = [], [], [], None, 0
    for number, line in enumerate(text.splitlines(), 1):
        fence = re.match(r"^\s*```\s*([\w+-]*)", line)
        if lang is None and fence:
            lang, start, body = fence.group(1).lower(), number, []
            prose.append("")
        elif lang is not None and re.match(r"^\s*```\s*$", line):
            blocks.append((start, lang, "\n".join(body)))
            lang = None
            prose.append("")
        elif lang is not None:
            body.append(line)
            prose.append("")
        else:
            prose.append(line)
    return blocks, "\n".join(prose)


def blocks() -> list[Block]:
    return [Block(page, n, lang, body) for page in PAGES for n, lang, body in split_fences(page.read_text())[0]]


def inline_spans(page: Path) -> list[tuple[int, str]]:
    """Inline code spans outside fenced blocks (line, text), a span broken over lines joined with a space."""
    prose = split_fences(page.read_text())[1]
    return [
        (prose.count("\n", 0, m.start()) + 1, " ".join(m.group(1).split()))
        for m in re.finditer(r"(?<!`)`([^`]+)`(?!`)", prose)
    ]


def logical_lines(block: Block) -> list[tuple[int, str]]:
    """Shell lines of a block: comments removed, backslash continuations joined."""
    out, pending, first = [], "", 0
    for offset, raw in enumerate(block.text.splitlines(), 1):
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if not pending:
            first = block.line + offset
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        out.append((first, pending + line))
        pending = ""
    if pending:
        out.append((first, pending))
    return out


def commands() -> list[Command]:
    found = [
        Command(b.page, n, text) for b in blocks() if b.lang in SHELL_LANGS for n, text in logical_lines(b) if text
    ]
    for page in PAGES:
        found += [Command(page, n, text) for n, text in inline_spans(page)]
    return found


def shell_words(text: str) -> list[str]:
    """The words bash hands a program: placeholders such as ``<run>`` stand for a value, ``~`` and
    ``$VAR`` expanded (also after the ``=`` of ``key=~/path``)."""
    text = re.sub(r"<[^<>]*>", "PLACEHOLDER", text)
    try:
        words = shlex.split(text)
    except ValueError:  # an unbalanced quote: prose, not a command
        return []
    out = []
    for word in words:
        key, eq, value = word.partition("=")
        if eq and value.startswith("~"):
            word = key + "=" + os.path.expanduser(value)
        out.append(os.path.expandvars(os.path.expanduser(word)))
    return out


def invocation(words: list[str]) -> tuple[str, list[str]] | None:
    """(program, arguments) of a command line: ``train.py``, ``evaluate.py``, ``-m MODULE`` or an app's name."""
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):  # COLORGAN_DATA_DIR=/x python ...
        words = words[1:]
    if not words:
        return None
    program = Path(words[0]).name
    if program in APPS:
        return program, words[1:]
    if program in ("python", "python3") and len(words) > 1:
        if words[1] == "-m" and len(words) > 2:
            return f"-m {words[2]}", words[3:]
        if words[1] in HYDRA_SCRIPTS:
            return words[1], words[2:]
    return None


def invocations() -> list[tuple[Command, str, list[str]]]:
    out = []
    for command in commands():
        found = invocation(shell_words(command.text))
        if found is not None:
            out.append((command, *found))
    return out


INVOCATIONS = invocations()


# ----------------------------------------------------------------------------- (a) a front page


def test_readme_is_a_front_page():
    lines = len(README.read_text().splitlines())
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines, over {MAX_README_LINES}: move detail into docs/"


# ----------------------------------------------------------------------------- (b) links


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    prose = split_fences(page.read_text())[1]
    seen: dict[str, int] = {}
    out = set()
    for match in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", prose, re.MULTILINE):
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return out


def links(page: Path) -> list[tuple[int, str]]:
    prose = split_fences(page.read_text())[1]
    prose = re.sub(r"`[^`]*`", lambda m: " " * len(m.group(0)), prose)  # code spans hold no links
    return [
        (prose.count("\n", 0, m.start()) + 1, m.group(1))
        for m in re.finditer(r"\]\(\s*([^)\s]+)(?:\s+\"[^\"]*\")?\s*\)", prose)
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_to_existing_files_and_headings(page):
    broken = []
    for line, target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path, _, fragment = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"line {line}: {target} (no such file {file})")
        elif fragment and file.suffix == ".md" and fragment not in anchors(file):
            broken.append(f"line {line}: {target} (no heading #{fragment} in {file.name})")
    assert not broken, "\n".join(broken)


# ----------------------------------------------------------------------------- (c) python -m


def python_m_modules() -> list[tuple[str, str]]:
    return sorted(
        {
            (f"{page.relative_to(ROOT)}", m.group(1))
            for page in PAGES
            for m in re.finditer(r"python3? -m ([A-Za-z_][\w.]*\w)", page.read_text())
        }
    )


@pytest.mark.parametrize(("page", "module"), python_m_modules())
def test_python_m_names_an_importable_module(page, module):
    spec = importlib.util.find_spec(module)
    assert spec is not None, f"{page}: python -m {module}: no such module"
    if spec.submodule_search_locations is not None:  # a package runs its __main__
        assert importlib.util.find_spec(f"{module}.__main__"), f"{page}: python -m {module}: a package without __main__"


# ----------------------------------------------------------------------------- (d) Hydra commands


@functools.cache
def _load_train_script():
    spec = importlib.util.spec_from_file_location("colorgan_train_script", ROOT / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def hydra_overrides(program: str, args: list[str]) -> list[str]:
    """What the program hands Hydra: no -m, no hydra.* settings (the launcher's own), a probe's ``train``."""
    if program == "train.py":
        args = _load_train_script().command_line(args)
    if program == f"-m {PROBE}":
        assert args[:1] == ["train"], f"python -m {PROBE} takes 'train' first, got {args}"
        args = args[1:]
    return [a for a in args if a not in ("-m", "--multirun") and not a.startswith(("hydra.", "+hydra.", "++hydra."))]


def runs_of(overrides: list[str]) -> list[list[str]]:
    """One override list per value of each swept key (``key=a,b,c`` of a multirun)."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    choices = []
    for text, override in zip(overrides, parsed):
        if override.is_sweep_override():
            prefix = text[: len(text) - len(text.partition("=")[2])]
            choices.append([prefix + value for value in override.sweep_string_iterator()])
        else:
            choices.append([text])
    return [list(run) for run in itertools.product(*choices)]


def hydra_commands() -> list[tuple[Command, str, list[str]]]:
    return [
        (command, program, args)
        for command, program, args in INVOCATIONS
        if program in HYDRA_SCRIPTS or program == f"-m {PROBE}"
    ]


def compose_all(config_name: str, runs: list[list[str]]) -> None:
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            for overrides in runs:
                compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()


@pytest.mark.parametrize(
    ("command", "program", "args"), hydra_commands(), ids=lambda v: v.where if isinstance(v, Command) else None
)
def test_hydra_commands_compose(command, program, args):
    config_name = HYDRA_SCRIPTS.get(program, "probe")
    try:
        compose_all(config_name, runs_of(hydra_overrides(program, args)))
    except Exception as err:  # Hydra's own error names the key or the missing choice
        pytest.fail(f"{command.where}: {command.text}\n  does not compose with conf/{config_name}.yaml: {err}")


def test_the_docs_show_hydra_commands():
    programs = {program for _, program, _ in hydra_commands()}
    assert {"train.py", "evaluate.py", f"-m {PROBE}"} <= programs, programs


# ----------------------------------------------------------------------------- (e) program options


class _Parser(Exception):
    """Carries the parser a program's ``main`` built, out of ``parse_args``, before it does any work."""


def parser_of(module_name: str, monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    module = importlib.import_module(module_name)
    if hasattr(module, "build_parser"):
        return module.build_parser()
    assert hasattr(module, "main"), f"{module_name}: no build_parser() or main() to read its options from"

    def caught(self, *args, **kwargs):
        raise _Parser(self)

    with monkeypatch.context() as patch:
        patch.setattr(argparse.ArgumentParser, "parse_args", caught)
        patch.setattr(argparse.ArgumentParser, "parse_known_args", caught)
        try:
            module.main([])
        except _Parser as found:
            return found.args[0]
    pytest.fail(f"{module_name}.main() built no argparse parser")


def options(args: list[str]) -> list[str]:
    out = []
    for arg in args:
        arg = arg.strip("[]")
        if arg.startswith("-") and not re.match(r"^-\d", arg):
            out.append(arg.partition("=")[0])
    return out


def option_commands() -> list[tuple[Command, str, list[str]]]:
    out = []
    for command, program, args in INVOCATIONS:
        module = APPS.get(program) or (program[3:] if program.startswith("-m colorgan.") else None)
        if module and module != PROBE and options(args):
            out.append((command, module, options(args)))
    return out


@pytest.mark.parametrize(
    ("command", "module", "used"), option_commands(), ids=lambda v: v.where if isinstance(v, Command) else None
)
def test_program_options_exist(command, module, used, monkeypatch):
    known = set(parser_of(module, monkeypatch)._option_string_actions)
    unknown = [option for option in used if option not in known]
    assert not unknown, f"{command.where}: {command.text}\n  {module} has no option {', '.join(unknown)}"


def test_the_docs_use_every_app():
    used = {module for _, module, _ in option_commands()}
    assert set(APPS.values()) <= used, used


# ----------------------------------------------------------------------------- Python examples


def python_imports() -> list[tuple[Block, str, list[str]]]:
    out = []
    for block in blocks():
        if block.lang != "python":
            continue
        for node in ast.walk(ast.parse(block.text)):
            if isinstance(node, ast.ImportFrom) and node.module:
                out.append((block, node.module, [alias.name for alias in node.names]))
            elif isinstance(node, ast.Import):
                out += [(block, alias.name, []) for alias in node.names]
    return out


@pytest.mark.parametrize(
    ("block", "module", "names"),
    python_imports(),
    ids=lambda v: f"{v.page.name}:{v.line}" if isinstance(v, Block) else None,
)
def test_python_examples_import(block, module, names):
    imported = importlib.import_module(module)
    missing = [name for name in names if not hasattr(imported, name)]
    assert not missing, f"{block.page.name}:{block.line}: {module} has no {', '.join(missing)}"


# ----------------------------------------------------------------------------- architecture.md


def test_architecture_names_every_module():
    text = ARCHITECTURE.read_text()
    files = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py"))
    missing = [f for f in files if f"`{f}`" not in text]
    assert not missing, f"docs/architecture.md has no row for colorgan/{', colorgan/'.join(missing)}"
    named = set(re.findall(r"^\| `([\w/]+\.py)` \|", text, re.MULTILINE))
    gone = sorted(named - set(files))
    assert not gone, f"docs/architecture.md has rows for files that do not exist: {gone}"


def jobs_imported(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        found += [n for n in names if n.split(".")[:2] in [["colorgan", job] for job in JOBS]]
    return found


def test_the_core_never_imports_the_jobs():
    broken = {str(p.relative_to(ROOT)): jobs_imported(p) for p in FOUNDATION if jobs_imported(p)}
    assert not broken, f"the core, data/ and models/ import from {'/, '.join(JOBS)}/: {broken}"
