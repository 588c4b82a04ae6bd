"""Interrupt, crash, resume and concurrent writers: runs you can trust."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pytest

from lba_cli.config import FinetuneConfig, RunConfig, TrainConfig
from lba_cli.finetune import finetune
from lba_cli.resume import resume_run
from lba_cli.runs import RunStore
from lba_cli.train import NullReporter


class _InterruptAt(NullReporter):
    """Sends SIGINT to this process at one (epoch, step), as a user pressing Ctrl-C would."""

    def __init__(self, epoch: int, step: int) -> None:
        self.at = (epoch, step)

    def step(self, *, epoch: int, step: int, **_) -> None:
        if (epoch, step) == self.at:
            os.kill(os.getpid(), signal.SIGINT)


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
        finetune(_config(tiny_h5), store, _InterruptAt(epoch=2, step=1))
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
