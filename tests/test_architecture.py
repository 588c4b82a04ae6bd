"""Layering rules: no import cycles; the core never imports typer; `lba --help` never imports torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lba_cli"


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def _module_names() -> dict[str, Path]:
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _import_graph() -> dict[str, set[str]]:
    """Module -> the lba_cli modules it imports anywhere (top level or inside functions).

    ``from a.b import c`` depends on ``a.b.c`` when that is a module, else on ``a.b``.
    """
    modules = _module_names()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            else:
                continue
            edges.update(t for t in targets if t in modules and t != name)
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle found by depth-first search (each reported once, from where it closes)."""
    found, state = [], {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                found.append(trail[trail.index(nxt):] + [node, nxt] if nxt in trail else [node, nxt])
            elif nxt not in state:
                visit(nxt, trail + [node])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return found


def test_no_import_cycles_between_modules():
    graph = _import_graph()
    assert len(graph) > 40 and "lba_cli.data.sources.atom3d" in graph["lba_cli.data.sources"]
    assert _cycles(graph) == []


def test_every_module_imports():
    names = sorted(_module_names())
    modules = _modules_after("import importlib\n" + "\n".join(f"importlib.import_module({n!r})" for n in names
                                                               if n != "lba_cli.__main__"))
    assert set(names) - {"lba_cli.__main__"} <= modules


def test_core_does_not_import_typer_or_rich():
    core = [n for n in _module_names() if not n.startswith(("lba_cli.cli", "lba_cli.progress", "lba_cli.__main__"))]
    modules = _modules_after("; ".join(f"import {m}" for m in core))
    assert "typer" not in modules
    assert "rich" not in modules


def test_cli_import_and_every_help_do_not_import_torch():
    """`lba --help` and `lba CMD --help` stay fast: no torch, polars or plotnine at start."""
    code = ("from typer.testing import CliRunner\nfrom lba_cli.cli import app\nrunner = CliRunner()\n"
            "for args in ([], ['download'], ['voxelize'], ['pretrain'], ['finetune'], ['sweep'], ['evaluate'], "
            "['plot'], ['compare'], ['runs', 'list'], ['runs', 'show']):\n"
            "    result = runner.invoke(app, [*args, '--help'])\n"
            "    assert result.exit_code == 0, (args, result.output)\n")
    modules = _modules_after(code)
    assert "lba_cli.cli" in modules
    assert not {"torch", "numpy", "polars", "plotnine"} & modules


_BLOCK_FILE_READERS = '''
import importlib.abc, sys

class _Blocked(importlib.abc.MetaPathFinder):
    """rdkit, gemmi and lmdb read files; training on an lba voxelize file must not need them."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {"rdkit", "gemmi", "lmdb"}:
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, _Blocked())
'''


def test_training_needs_no_rdkit_gemmi_or_lmdb(tmp_path, tiny_h5):
    """What a machine without the file readers (the GPU check's) runs: import, train, evaluate."""
    code = _BLOCK_FILE_READERS + f'''
import lba_cli.cli.train_commands, lba_cli.evaluate, lba_cli.finetune, lba_cli.pretrain, lba_cli.progress
import torch
from lba_cli.config import ModelConfig, build_run_config
from lba_cli.evaluate import evaluate_run
from lba_cli.finetune import finetune
from lba_cli.models import create_model
from lba_cli.runs import RunStore

try:
    import gemmi
except ImportError:
    pass
else:
    raise SystemExit("the blocker let gemmi through")
store = RunStore({str(tmp_path / "runs")!r})
config = build_run_config("finetune", None, {{"finetune": {{"data_path": {str(tiny_h5)!r}}},
                          "train": {{"num_epochs": 1, "batch_size": 2, "device": "cpu"}},
                          "model": {{"arch": "cnn", "widths": (8, 16)}}}})
run = finetune(config, store)
result = evaluate_run(store, run.id, "test", device="cpu")
model = create_model(ModelConfig(arch="cnn", widths=(8, 16)), 7, "neighbor")
logits = model(torch.rand(2, 7, 21, 21, 21), torch.rand(2, 7, 21, 21, 21))
logits.logsumexp(1).sum().backward()
print(run.status["status"], int(result.metrics["n"]), tuple(logits.shape),
      sorted(m for m in sys.modules if m.partition(".")[0] in {{"rdkit", "gemmi", "lmdb"}}))
'''
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split("\n")[-2].startswith("completed ") and out.stdout.strip().endswith("(2, 6) []")
