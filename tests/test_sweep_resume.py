"""`lba sweep` survives interruption: the same command again reuses finished runs and resumes
the interrupted one; run names stay unique; another plan in the same folder is refused."""

from __future__ import annotations

import os
import signal

import pytest
from conftest import SHARED, require_shared

from lba_cli.choices import RunKind
from lba_cli.config import GridConfig, build_run_config
from lba_cli.data.build import build_dataset
from lba_cli.errors import ConfigError
from lba_cli.runs import RunStore
from lba_cli.sweep import SweepPlan, run_sweep
from lba_cli.train import NullReporter

MANIFEST = SHARED.parent / "faults" / "10-resume-after-failed-attempt" / "data" / "manifest.csv"
TINY_MODEL = {"widths": (8, 16)}


class _InterruptRun(NullReporter):
    """Ctrl-C at the first step of the n-th run the sweep trains (as a user would press it)."""

    def __init__(self, nth: int) -> None:
        self.nth, self.started = nth, 0

    def start(self, **_) -> None:
        self.started += 1

    def step(self, *, epoch: int, step: int, **_) -> None:
        if self.started == self.nth and (epoch, step) == (1, 0):
            os.kill(os.getpid(), signal.SIGINT)


def _plan(data, structures, output, seeds=(0,)):
    pre = build_run_config(RunKind.pretrain, None, {
        "structures": [str(structures)], "model": TINY_MODEL,
        "train": {"num_epochs": 1, "batch_size": 4, "device": "cpu"}, "neighbor": {"epoch_size": 8, "val_size": 4}})
    tune = build_run_config(RunKind.finetune, None, {
        "finetune": {"data_path": str(data)}, "model": TINY_MODEL,
        "train": {"num_epochs": 1, "batch_size": 4, "device": "cpu"}})
    return SweepPlan(pre, tune, ((1.0, 2.0, 20.0),), tuple(seeds), output)


@pytest.fixture()
def data(tmp_path):
    require_shared()
    path = tmp_path / "data.h5"
    build_dataset([MANIFEST], path, GridConfig(box_size_voxels=10, resolution_A=2.0))
    return path


def test_an_interrupted_sweep_continues_where_it_stopped(tmp_path, data, bm5_subset):
    store = RunStore(tmp_path / "runs")
    plan = _plan(data, bm5_subset, tmp_path / "sweep")
    with pytest.raises(KeyboardInterrupt):
        run_sweep(plan, store, _InterruptRun(2))  # random control done; pre-training interrupted
    before = {row["name"]: row for row in store.index_rows()}
    assert [row["status"] for row in before.values()] == ["completed", "interrupted"]
    done_random = next(row for name, row in before.items() if name.endswith("-random-s0"))

    result = run_sweep(plan, store, NullReporter())
    rows = store.index_rows()
    names = [row["name"] for row in rows]
    assert len(names) == len(set(names)) == 4  # 1 random, 1 pre-training, 1 fine-tuned, 1 frozen: nothing twice
    assert all(row["status"] == "completed" for row in rows)
    assert {name: row["id"] for name, row in before.items()} == {row["name"]: row["id"] for row in rows
                                                                if row["name"] in before}  # reused and resumed
    reused = store.resolve(done_random["id"])
    assert reused.read_metrics()["epoch"].to_list() == [1]  # not trained again
    assert sorted(label for label, _, _ in result.runs) == ["1-2-20", "1-2-20 frozen", "random"]
    assert all(f"group:{result.group}" in row["tags"] for row in rows)

    other = run_sweep(_plan(data, bm5_subset, tmp_path / "sweep2"), store, NullReporter())  # a second sweep
    assert other.group != result.group
    names = [row["name"] for row in store.index_rows()]
    assert len(names) == len(set(names)) == 8  # its runs are named apart

    with pytest.raises(ConfigError, match="holds another sweep"):
        run_sweep(_plan(data, bm5_subset, tmp_path / "sweep", seeds=(0, 1)), store, NullReporter())
