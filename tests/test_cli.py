"""The command line: help for every command, errors without tracebacks, and the whole pipeline."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from lba_cli.cli import app

runner = CliRunner()

COMMANDS = [["download"], ["voxelize"], ["corpus"], ["pretrain"], ["finetune"], ["sweep"], ["evaluate"], ["plot"],
            ["compare"], ["predict"], ["export"], ["runs", "list"],
            ["runs", "show"], ["runs", "rm"], ["runs", "tag"], ["runs", "reindex"]]


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_every_command_has_help_with_an_example(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example:" in result.output and "lba " in result.output


def test_root_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ("voxelize", "pretrain", "finetune", "evaluate", "plot", "compare", "predict", "export", "runs"):
        assert name in result.output


def invoke(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    return result


ERROR_CASES = [
    ("missing-source", ["voxelize", "/nonexistent/data", "-o", "x.h5"], "source not found"),
    ("unknown-run", ["evaluate", "no-such-run"], "no run matches"),
    ("bad-channels", ["voxelize", ".", "-o", "x.h5", "--channels", "C;;N"], "invalid --channels"),
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

    corpus = tmp_path / "corpus.h5"
    result = invoke("corpus", bm5_subset, "-o", corpus, "--max-pad", "2", "--report", tmp_path / "left_out.csv")
    assert result.exit_code == 0, result.output
    assert "5 structures" in result.output and "0 left out" in result.output

    (tmp_path / "small.toml").write_text("[neighbor]\npilot_pairs = 400\n")  # a quick balance fit
    result = invoke("pretrain", "--structures", corpus, "--pad", "1", "2", "--angle", "20", "--epochs", "1",
                    "--epoch-size", "8", "--val-size", "4", "--batch-size", "4", "--name", "pre", "--runs-dir", runs,
                    "--exclude-similar-to", data, "--config", tmp_path / "small.toml")
    assert result.exit_code == 0, result.output
    assert "the views can overlap" in result.output and "3.4 Å" in result.output
    pre_id = result.stdout.strip().splitlines()[-1]
    checkpoints = runs / pre_id / "checkpoints"
    assert (checkpoints / "best.pt").is_file() and (checkpoints / "last.pt").is_file()
    log = (runs / pre_id / "log.txt").read_text()
    assert "shortcut balance from 400 pilot pairs" in log and "warning: the views can overlap" in log
    shown = json.loads(invoke("runs", "show", "pre", "--format", "json", "--runs-dir", runs).stdout)
    assert "excluded_similar" in shown["status"] and "val/shortcut_accuracy" in shown["status"]["metrics"]
    assert shown["config"]["exclude_similar_to"] == [str(data)]

    result = invoke("pretrain", "--structures", corpus, "--pad", "1", "4", "--epochs", "1", "--runs-dir", runs)
    assert result.exit_code == 1 and "tested up to 2 Å padding" in result.output

    for name, extra in (("rand", ["--init", "random"]), ("tuned", ["--init", "pre"]), ("frozen", ["--init", "pre",
                                                                                                  "--freeze"])):
        result = invoke("finetune", data, *extra, "--epochs", "2", "--batch-size", "4", "--name", name, "--runs-dir",
                        runs)
        assert result.exit_code == 0, result.output

    result = invoke("evaluate", "rand", "tuned", "--split", "test", "--format", "json", "--runs-dir", runs)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["label"] for r in rows] == ["random", "1-2-20", "baseline: train mean", "baseline: heavy atoms"]
    assert all(r["n"] >= 1 and r["rmse"] > 0 for r in rows)
    # intervals as unrounded numbers (null where a tiny split has none)
    assert all(r["rmse_ci_low"] is None or r["rmse_ci_low"] <= r["rmse"] <= r["rmse_ci_high"] for r in rows)

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
    assert "index.sqlite" not in result.output  # a runs directory's own files are not runs: left out silently
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
    (tmp_path / "small.toml").write_text("[neighbor]\nbalance_shortcut = false\n")
    result = invoke("pretrain", "--structures", bm5_subset, "--epochs", "1", "--epoch-size", "4", "--val-size", "4",
                    "--batch-size", "4", "--arch", "cnn", "--name", "pre", "--config", tmp_path / "small.toml")
    assert result.exit_code == 0, result.output
    result = invoke("finetune", tiny_h5, "--init", "pre", "--arch", "resnet")
    assert result.exit_code == 1
    assert "arch: requested 'resnet', checkpoint has 'cnn'" in result.output


def test_config_file_precedence_and_print_config(tmp_path, tiny_h5, monkeypatch):
    """Defaults < --config TOML < command-line options; --print-config round-trips."""
    import tomllib

    monkeypatch.chdir(tmp_path)
    result = invoke("finetune", tiny_h5, "--epochs", "7", "--lr", "0.01", "--print-config")
    assert result.exit_code == 0, result.output
    printed = tomllib.loads(result.stdout)
    assert printed["train"]["num_epochs"] == 7 and printed["train"]["batch_size"] == 16  # CLI, default
    (tmp_path / "run.toml").write_text(result.stdout)
    result = invoke("finetune", "--config", tmp_path / "run.toml", "--lr", "0.002", "--print-config")
    again = tomllib.loads(result.stdout)
    assert again["train"]["num_epochs"] == 7  # from the file
    assert again["train"]["lr"] == 0.002  # the command line wins over the file
    (tmp_path / "bad.toml").write_text("[train]\nepochs = 3\n")
    result = invoke("finetune", tiny_h5, "--config", tmp_path / "bad.toml")
    assert result.exit_code == 1 and "unknown TrainConfig field(s): epochs" in result.output


def test_json_output_is_strict_json(tmp_path, tiny_h5, monkeypatch):
    """One validation complex gives NaN correlations; JSON on stdout must still parse strictly."""
    monkeypatch.chdir(tmp_path)
    assert invoke("finetune", tiny_h5, "--epochs", "1", "--name", "one").exit_code == 0
    result = invoke("compare", "one", "--format", "json")
    rows = json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert rows[0]["val/pearson"] is None


def test_tags_and_list_filters(tmp_path, tiny_h5, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("a", "b"):
        assert invoke("finetune", tiny_h5, "--epochs", "1", "--name", name).exit_code == 0
    assert invoke("runs", "tag", "a", "baseline", "paper").stdout.split() == ["baseline", "paper"]
    assert invoke("runs", "tag", "a", "--", "-paper").stdout.split() == ["baseline"]
    listed = json.loads(invoke("runs", "list", "--tag", "baseline", "--format", "json").stdout)
    assert [r["name"] for r in listed] == ["a"]
    assert json.loads(invoke("runs", "list", "--status", "completed", "--format", "json").stdout).__len__() == 2
    # text, not Rich markup: a tag in brackets is printed whole, by tag, show and the list table
    assert "[wip]" in invoke("runs", "tag", "b", "[wip]").stdout
    assert "[wip]" in invoke("runs", "show", "b").stdout
    assert "[wip]" in invoke("runs", "list", "--tag", "[wip]").stdout


@pytest.mark.parametrize("suffix", [".png", ".svg", ".pdf"])
def test_plot_files_are_real_images(tmp_path, tiny_h5, monkeypatch, suffix):
    monkeypatch.chdir(tmp_path)
    assert invoke("finetune", tiny_h5, "--epochs", "2", "--name", "r").exit_code == 0
    path = tmp_path / f"curves{suffix}"
    result = invoke("plot", "r", "-o", path, "--metric", "val/*", "--width-in", "6", "--height-in", "4")
    assert result.exit_code == 0, result.output
    data = path.read_bytes()
    if suffix == ".png":
        import matplotlib.image

        image = matplotlib.image.imread(path)
        assert image.shape[:2] == (4 * 150, 6 * 150)  # inches x dpi
        assert image[..., :3].std() > 0.05  # not blank
    elif suffix == ".svg":
        assert data.lstrip().startswith(b"<?xml") and b"<path" in data and b"val/rmse" in data
    else:
        assert data.startswith(b"%PDF") and len(data) > 5_000


def test_two_process_training_with_torchrun(tmp_path, tiny_h5):
    """torchrun --nproc-per-node 2 on the CPU (gloo): one run, written by rank 0 alone."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "LBA_RUNS_DIR": str(tmp_path / "runs"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                             "--master-port", "29533", "-m", "lba_cli", "finetune", str(tiny_h5), "--epochs", "2",
                             "--batch-size", "2", "--device", "cpu", "--quiet"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    runs = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    assert len(runs) == 1
    status = json.loads((runs[0] / "status.json").read_text())
    assert status["status"] == "completed" and status["world_size"] == 2 and status["epochs_done"] == 2
    assert (runs[0] / "checkpoints" / "best.pt").is_file() and (runs[0] / "predictions_test.parquet").is_file()


def test_run_names_init_kinds_and_extending_a_run(tmp_path, tiny_h5, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for bad in ("random", "20261130-0827"):
        result = invoke("finetune", tiny_h5, "--name", bad, "--epochs", "1")
        assert result.exit_code == 1 and "--name" in result.output
    assert invoke("finetune", tiny_h5, "--epochs", "1", "--name", "rand").exit_code == 0
    result = invoke("finetune", tiny_h5, "--init", "rand")
    assert result.exit_code == 1 and "is a finetune run" in result.output
    result = invoke("finetune", "--resume", "rand")
    assert result.exit_code == 1 and "--epochs N to train it longer" in result.output
    result = invoke("finetune", "--resume", "rand", "--epochs", "2", "--quiet")
    assert result.exit_code == 0, result.output
    shown = json.loads(invoke("runs", "show", "rand", "--format", "json").stdout)
    assert shown["status"]["epochs_done"] == 2 and shown["config"]["train"]["num_epochs"] == 2
    result = invoke("runs", "rm", "rand")  # CliRunner's stdin is not a terminal
    assert result.exit_code == 2 and "--yes" in result.output


def test_exclude_ids_report_what_matched_nothing(tmp_path, bm5_corpus):
    from lba_cli.config import ModelConfig, NeighborConfig, RunConfig
    from lba_cli.pretrain import prepare_pretrain

    config = RunConfig(kind="pretrain", structures=(str(bm5_corpus),), exclude_ids=("1acb_r_u", "zzzz"),
                       model=ModelConfig(arch="cnn"), neighbor=NeighborConfig(balance_shortcut=False))
    prepared = prepare_pretrain(config)
    skipped = prepared.notes["skipped"]
    assert prepared.notes["num_structures"] == 4
    assert any(path.endswith("1ACB_r_u.pdb.gz") and reason == "excluded by --exclude-ids" for path, reason in skipped)
    assert any("1 of 2 ids match no structure" in reason and "zzzz" in reason for _, reason in skipped)
