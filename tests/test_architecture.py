"""Layering rules: the core never imports typer; `lba --help` never imports torch."""

from __future__ import annotations

import subprocess
import sys


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_core_does_not_import_typer_or_rich():
    core = ("lba_cli.voxelize", "lba_cli.data.build", "lba_cli.train", "lba_cli.finetune", "lba_cli.pretrain",
            "lba_cli.evaluate", "lba_cli.runs", "lba_cli.compare", "lba_cli.plots")
    modules = _modules_after("; ".join(f"import {m}" for m in core))
    assert "typer" not in modules
    assert "rich" not in modules


def test_cli_import_does_not_import_torch():
    modules = _modules_after("import lba_cli.cli")
    assert "torch" not in modules and "polars" not in modules and "plotnine" not in modules
