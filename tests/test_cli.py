"""The command line: help for every command, errors without tracebacks, and the whole pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lba_cli.cli import app

runner = CliRunner()

COMMANDS = [["voxelize"], ["pretrain"], ["finetune"], ["evaluate"], ["plot"], ["compare"], ["runs", "list"],
            ["runs", "show"], ["runs", "rm"], ["runs", "reindex"]]


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_every_command_has_help_with_an_example(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example:" in result.output and "lba " in result.output


def test_root_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ("voxelize", "pretrain", "finetune", "evaluate", "plot", "compare", "runs"):
        assert name in result.output


def invoke(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    return result


ERROR_CASES = [
    ("missing-source", ["voxelize", "/nonexistent/data", "-o", "x.h5"], "source not found"),
    ("unknown-run", ["evaluate", "no-such-run"], "no run matches"),
    ("bad-channels", ["voxelize", ".", "-o", "x.h5", "--channels", "C;;N"], "invalid channels"),
]


@pytest.mark.parametrize("name,args,message", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_user_errors_exit_1_with_a_message_and_no_traceback(name, args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke(*args)
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


def test_usage_error_exits_2():
    assert invoke("finetune").exit_code == 2


def test_pipeline_end_to_end(tmp_path, tiny_pdbbind, bm5_subset, monkeypatch):
    """voxelize -> pretrain -> finetune (random, pre-trained, frozen) -> evaluate -> plot -> compare -> runs."""
    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "runs"
    data = tmp_path / "tiny.h5"
    report = tmp_path / "skipped.csv"

    result = invoke("voxelize", tiny_pdbbind, "-o", data, "--split", "random", "--report", report)
    assert result.exit_code == 0, result.output
    assert "8 complexes" in result.output and "0 skipped" in result.output
    assert report.read_text().splitlines() == ["id,source,stage,reason"]

    result = invoke("pretrain", "--structures", bm5_subset, "--pad", "1", "2", "--angle", "20", "--epochs", "1",
                    "--epoch-size", "8", "--val-size", "4", "--batch-size", "4", "--name", "pre", "--runs-dir", runs)
    assert result.exit_code == 0, result.output
    pre_id = result.stdout.strip().splitlines()[-1]
    assert (runs / pre_id / "checkpoints" / "best.pt").is_file() and (runs / pre_id / "checkpoints" / "last.pt").is_file()

    for name, extra in (("rand", ["--init", "random"]), ("tuned", ["--init", "pre"]), ("frozen", ["--init", "pre", "--freeze"])):
        result = invoke("finetune", data, *extra, "--epochs", "2", "--batch-size", "4", "--name", name, "--runs-dir", runs)
        assert result.exit_code == 0, result.output

    result = invoke("evaluate", "rand", "tuned", "--split", "test", "--format", "json", "--runs-dir", runs)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["label"] for r in rows] == ["random", "1-2-20"]
    assert all(r["n"] >= 1 and r["rmse"] > 0 for r in rows)

    figure = tmp_path / "curves.png"
    result = invoke("plot", *sorted(str(p) for p in runs.iterdir()), "-o", figure, "--runs-dir", runs)
    assert result.exit_code == 0, result.output
    assert figure.stat().st_size > 10_000

    scatter = tmp_path / "scatter.svg"
    result = invoke("plot", "rand", "tuned", "--kind", "scatter", "-o", scatter, "--runs-dir", runs)
    assert result.exit_code == 0, result.output
    assert scatter.read_text().lstrip().startswith("<?xml")

    result = invoke("compare", *sorted(str(p) for p in runs.iterdir()), "--format", "csv", "--runs-dir", runs)
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 + 4  # header + 1 pretrain + 3 finetune runs; index.sqlite skipped
    assert "not a run directory" in result.output
    header = lines[0].split(",")
    assert {"label", "best_epoch", "val/rmse", "test/rmse", "finetune.freeze"} <= set(header)

    result = invoke("runs", "list", "--format", "json", "--runs-dir", runs)
    assert [r["status"] for r in json.loads(result.stdout)] == ["completed"] * 4
    result = invoke("runs", "show", "tuned", "--format", "json", "--runs-dir", runs)
    shown = json.loads(result.stdout)
    assert shown["status"]["parent_id"] == pre_id and "predictions_test.parquet" in shown["files"]
    assert invoke("runs", "reindex", "--runs-dir", runs).stdout.strip() == "indexed 4 runs"


def test_finetune_init_mismatch_lists_the_differing_fields(tmp_path, tiny_h5, bm5_subset, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("pretrain", "--structures", bm5_subset, "--epochs", "1", "--epoch-size", "4", "--val-size", "4",
                    "--batch-size", "4", "--arch", "cnn", "--name", "pre")
    assert result.exit_code == 0, result.output
    result = invoke("finetune", tiny_h5, "--init", "pre", "--arch", "resnet")
    assert result.exit_code == 1
    assert "arch: requested 'resnet', checkpoint has 'cnn'" in result.output
