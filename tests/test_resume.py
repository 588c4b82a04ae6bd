"""Interrupt, crash, resume and concurrent writers: runs you can trust."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time

import h5py
import pytest
import torch
from conftest import SHARED, TINY_TRAIN, InterruptAt, require_shared
from typer.testing import CliRunner

from lba_cli.cli import app
from lba_cli.config import FinetuneConfig, RunConfig, TrainConfig
from lba_cli.finetune import finetune
from lba_cli.resume import resume_run
from lba_cli.runs import RunStore


def _config(data, epochs=3):
    return RunConfig(kind="finetune", finetune=FinetuneConfig(data_path=str(data)),
                     train=TrainConfig(num_epochs=epochs, batch_size=2, seed=3))


def _curves(run):
    frame = run.read_metrics().drop("elapsed_s")
    return frame.to_dicts()


def test_interrupted_run_resumes_exactly_where_it_stopped(tmp_path, tiny_h5):
    store = RunStore(tmp_path / "runs")
    straight = finetune(_config(tiny_h5), store)

    with pytest.raises(KeyboardInterrupt):
        finetune(_config(tiny_h5), store, InterruptAt(epoch=2, step=1))
    stopped = store.runs()[-1]
    assert stopped.status["status"] == "interrupted"
    assert stopped.checkpoint_path("last").is_file()
    assert len(stopped.read_metrics()) == 1  # epoch 1 done, epoch 2 stopped after its second batch

    resumed = resume_run(store, stopped.id)
    assert resumed.status["status"] == "completed"
    a, b = _curves(straight), _curves(resumed)
    assert len(a) == len(b) == 3
    for row_a, row_b in zip(a, b):
        assert row_a.keys() == row_b.keys()
        for key in row_a:
            assert row_b[key] == pytest.approx(row_a[key], rel=1e-5, abs=1e-6, nan_ok=True), key
    assert resumed.status["metrics"]["test/rmse"] == pytest.approx(straight.status["metrics"]["test/rmse"], rel=1e-5)


def test_completed_run_cannot_be_resumed(tmp_path, tiny_h5):
    from lba_cli.errors import StoreError

    store = RunStore(tmp_path / "runs")
    run = finetune(_config(tiny_h5, epochs=1), store)
    with pytest.raises(StoreError, match="already completed"):
        resume_run(store, run.id)


def test_killed_run_reads_as_crashed_and_resumes(tmp_path, tiny_h5):
    runs = tmp_path / "runs"
    env = {**os.environ, "LBA_RUNS_DIR": str(runs)}
    process = subprocess.Popen([sys.executable, "-m", "lba_cli", "finetune", str(tiny_h5), "--epochs", "12",
                                "--batch-size", "2", "--quiet"], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    store = RunStore(runs)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = store.runs()
        if found and found[0].status.get("epochs_done", 0) >= 1:
            break
        time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("the training never finished an epoch")
    process.send_signal(signal.SIGKILL)
    process.wait()
    run = store.runs()[0]
    assert run.status["status"] == "crashed"
    assert [r["status"] for r in store.index_rows()] == ["crashed"]
    done_before = run.status["epochs_done"]
    assert 1 <= done_before < 12 and run.checkpoint_path("last").is_file()
    resumed = resume_run(store, run.id)
    history = resumed.read_metrics()
    assert resumed.status["status"] == "completed"
    assert history["epoch"].to_list() == list(range(1, 13))  # the history before the kill is kept


def _writer(root: str, name: str, updates: int) -> None:
    store = RunStore(root)
    run = store.create_run({"kind": "finetune", "name": name})
    for i in range(updates):
        run.update_status(status="running", heartbeat_at=f"2026-01-01T00:00:{i:02d}+00:00", metrics={"i": i})
    run.update_status(status="completed")


def test_two_processes_writing_one_runs_directory_both_land(tmp_path):
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_writer, args=(str(tmp_path), f"w{i}", 40)) for i in range(2)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(120)
        assert w.exitcode == 0
    store = RunStore(tmp_path)
    rows = store.index_rows()
    assert sorted(r["name"] for r in rows) == ["w0", "w1"]
    assert all(r["status"] == "completed" for r in rows)
    assert sorted(r.name for r in store.runs()) == ["w0", "w1"]


# --- what --resume changes, and what a failed --resume leaves alone -------------------------

FAULT_10 = SHARED.parent / "faults" / "10-resume-after-failed-attempt"


def _lba(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _snapshot(run) -> dict[str, bytes]:
    """Every file of a run directory, by relative path (the index is outside it)."""
    return {str(p.relative_to(run.path)): p.read_bytes() for p in sorted(run.path.rglob("*")) if p.is_file()}


@pytest.fixture()
def grown(tmp_path, monkeypatch):
    """Fault folder 10's data voxelized in tmp_path, and a finished 1-epoch run 'grow' on it."""
    require_shared()
    monkeypatch.chdir(tmp_path)
    result = _lba("voxelize", FAULT_10 / "data" / "manifest.csv", "-o", "data.h5", "--box-size", "10",
                  "--resolution", "2", "-q")
    assert result.exit_code == 0, result.output
    assert _lba("finetune", "data.h5", *TINY_TRAIN, "--name", "grow").exit_code == 0
    return RunStore().resolve("grow")


def test_fault_10_a_failed_resume_changes_nothing_and_the_retry_trains_on(grown, tmp_path):
    """../shared/faults/10: extending a finished run while its data file is moved away fails and
    leaves config.json (num_epochs 1), status and checkpoints as they were; put back, the same
    command trains the run to 2 epochs."""
    before = _snapshot(grown)
    (tmp_path / "data.h5").rename(tmp_path / "data.h5.away")
    result = _lba("finetune", "--resume", "grow", "--epochs", "2", "-q")
    assert result.exit_code == 1 and "not found" in result.output and "Traceback" not in result.output
    assert _snapshot(grown) == before
    assert json.loads((grown.path / "config.json").read_text())["train"]["num_epochs"] == 1

    for failing in (["--batch-size", "8"],  # a setting a run cannot change
                    ["--device", "cuda:0"] if not torch.cuda.is_available() else ["--arch", "cnn"]):
        if not (tmp_path / "data.h5").exists():
            (tmp_path / "data.h5.away").rename(tmp_path / "data.h5")
        result = _lba("finetune", "--resume", "grow", "--epochs", "2", *failing, "-q")
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert _snapshot(grown) == before

    result = _lba("finetune", "--resume", "grow", "--epochs", "2", "-q")
    assert result.exit_code == 0, result.output
    status = grown.status
    assert status["status"] == "completed" and status["epochs_done"] == 2
    assert grown.read_metrics()["epoch"].to_list() == [1, 2]


def test_resume_applies_a_new_learning_rate_and_refuses_other_changes(grown):
    result = _lba("finetune", "--resume", "grow", "--epochs", "2", "--lr", "0.1", "--batch-size", "8",
                  "--name", "other", "-q")
    assert result.exit_code == 1
    assert "train.batch_size (--batch-size): the run has 4, given 8" in result.output
    assert "name (--name): the run has 'grow', given 'other'" in result.output
    assert "--lr" in result.output.split("may change only")[1]  # what may change is listed

    result = _lba("finetune", "--resume", "grow", "--epochs", "2", "--lr", "0.1", "--batch-size", "4", "-q")
    assert result.exit_code == 0, result.output  # an unchanged setting given again is fine
    assert "train.lr 0.001 -> 0.1" in result.output and "train.num_epochs 1 -> 2" in result.output
    from lba_cli.checkpoints import load_checkpoint

    groups = load_checkpoint(grown.checkpoint_path("last"))["optimizer"]["param_groups"]
    assert [g["lr"] for g in groups] == [0.1, 0.1]  # encoder (scale 1) and head, from epoch 2 on
    assert grown.config["train"]["lr"] == 0.1
    session = grown.provenance["sessions"][-1]
    assert session["event"] == "resumed"
    assert session["changes"]["train.lr"] == {"from": 0.001, "to": 0.1, "from_epoch": 2}
    assert "train.lr 0.001 -> 0.1" in (grown.path / "log.txt").read_text()


def test_resume_from_a_moved_data_file_checks_its_contents(grown, tmp_path):
    (tmp_path / "moved").mkdir()
    (tmp_path / "data.h5").rename(tmp_path / "moved" / "data.h5")
    result = _lba("finetune", tmp_path / "moved" / "data.h5", "--resume", "grow", "--epochs", "2", "-q")
    assert result.exit_code == 0, result.output
    assert grown.config["finetune"]["data_path"] == str(tmp_path / "moved" / "data.h5")
    assert grown.provenance["data"][0]["path"] == str(tmp_path / "moved" / "data.h5")

    # the same file with one attribute added: a path the run accepts, contents it must refuse
    # (a second voxelize can write an identical file within the same second of its timestamp)
    shutil.copyfile(tmp_path / "moved" / "data.h5", "other.h5")
    with h5py.File("other.h5", "a") as handle:
        handle.attrs["edited_by_hand"] = 1
    before = _snapshot(grown)
    result = _lba("finetune", "other.h5", "--resume", "grow", "--epochs", "3", "-q")
    assert result.exit_code == 1 and "changed since run" in result.output
    assert _snapshot(grown) == before
