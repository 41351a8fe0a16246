"""The shape of the package and of its commands: jobs in subpackages, no import cycle, no core module that
imports a job, and one failure rule (message shape and exit code, colorgan/errors.py) for every program."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from colorgan.apps.colorize import main as colorize_main
from colorgan.apps.demo import main as demo_main
from colorgan.apps.export import main as export_main
from colorgan.data.prepare import main as prepare_main
from colorgan.errors import EXIT_MISTAKE, EXIT_USAGE
from colorgan.evaluate.tradeoff import main as tradeoff_main
from colorgan.runs.curves import main as curves_main
from tests.cli import run_script
from tests.conftest import ROOT, train_overrides

PACKAGE = ROOT / "colorgan"
JOBS = ("apps", "bench", "evaluate", "runs", "train")  # the subpackages of jobs; the rest is the core they share


def module_files() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the colorgan modules it imports (at the top or inside a function)."""
    modules = module_files()
    graph = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("colorgan"):
                deps |= {
                    f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                    for a in node.names
                }
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("colorgan")}
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def job_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if (len(parts) > 2 and parts[1] in JOBS) or (len(parts) == 2 and parts[1] in JOBS) else None


def test_the_package_has_no_import_cycle():
    graph, state, path, cycles = import_graph(), {}, [], []

    def visit(module: str) -> None:
        state[module] = "open"
        path.append(module)
        for dep in sorted(graph[module]):
            if state.get(dep) == "open":
                cycles.append(" -> ".join([*path[path.index(dep) :], dep]))
            elif dep not in state:
                visit(dep)
        path.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert not cycles


def test_core_modules_never_import_a_job():
    upward = [
        f"{module} imports {dep}"
        for module, deps in import_graph().items()
        for dep in deps
        if job_of(module) is None and job_of(dep) is not None
    ]
    assert not upward


def test_the_top_level_is_a_small_core_and_each_subpackage_says_what_lives_there():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 12, top
    for package in sorted(p.parent for p in PACKAGE.glob("*/__init__.py")):
        docstring = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
        assert docstring, f"{package} has no docstring"


# ------------------------------------------------------------------------------ one failure rule
@pytest.mark.parametrize(
    ("main", "prog", "args"),
    [
        (colorize_main, "colorgan-colorize", ["photo.png", "--out", "OUT"]),
        (export_main, "colorgan-export", ["--out", "OUT/model.onnx"]),
        (demo_main, "colorgan-demo", []),
    ],
)
def test_every_app_exits_1_naming_a_missing_ckpt_and_2_without_one(main, prog, args, tmp_path, capsys):
    args = [a.replace("OUT", str(tmp_path / "out")) for a in args]
    missing = tmp_path / "missing.ckpt"
    assert main([*args, "--ckpt", str(missing)]) == EXIT_MISTAKE
    err = capsys.readouterr().err
    assert err.startswith(f"{prog}: error: ") and str(missing) in err and "Traceback" not in err, err
    if prog != "colorgan-demo":  # the demo opens a shipped model when --ckpt is left out
        with pytest.raises(SystemExit) as info:
            main(args)
        assert info.value.code == EXIT_USAGE
        assert "--ckpt" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("main", "prog", "args"),
    [
        (curves_main, "python -m colorgan.runs.curves", ["MISSING", "--out", "OUT/curves.png"]),
        (tradeoff_main, "python -m colorgan.evaluate.tradeoff", ["MISSING/metrics.json", "--out", "OUT/t.png"]),
        (prepare_main, "python -m colorgan.data.prepare", ["MISSING", "--out", "OUT/shards"]),
    ],
)
def test_every_module_program_exits_1_naming_a_missing_input(main, prog, args, tmp_path, capsys):
    args = [a.replace("MISSING", str(tmp_path / "missing")).replace("OUT", str(tmp_path / "out")) for a in args]
    assert main(args) == EXIT_MISTAKE
    err = capsys.readouterr().err
    assert err.startswith(f"{prog}: error: ") and str(tmp_path / "missing") in err, err


@pytest.mark.slow
@pytest.mark.parametrize(("script", "override"), [("evaluate.py", "ckpt_path"), ("train.py", "model.init_from")])
def test_train_and_evaluate_exit_1_naming_a_missing_checkpoint(script, override, data_dir, tmp_path):
    missing = tmp_path / "missing.ckpt"
    quick = train_overrides("cifar_pretrain") if script == "train.py" else []  # the tiny data's split sizes
    run = tmp_path / "run"
    result = run_script(script, *quick, f"{override}={missing}", f"paths.data_dir={data_dir}", f"hydra.run.dir={run}")
    assert result.returncode == EXIT_MISTAKE, result.stderr[-2000:]
    assert f"{script}: error: " in result.stderr and str(missing) in result.stderr
    assert "Traceback" not in result.stderr
