"""The progress reporter: plain lines off a terminal, a live display on one, nothing when quiet."""

from __future__ import annotations

import io
import re

import pytest
import torch
from rich.console import Console

from lba_cli.progress import ProgressReporter, fit_fields, format_metrics


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def drive(reporter: ProgressReporter, clock: FakeClock) -> None:
    reporter.start(run_id="r1", kind="finetune", num_epochs=2, start_epoch=0, steps_per_epoch=3,
                   device=torch.device("cpu"))
    for epoch in (1, 2):
        for step in range(3):
            clock.now += 10.0
            reporter.step(epoch=epoch, step=step, loss=2.5 - epoch, num_samples=16)
        reporter.epoch_end(epoch=epoch, metrics={"elapsed_s": clock.now, "train/loss": 1.5, "val/rmse": 1.4},
                           best={"epoch": 1, "metric": "val/loss", "value": 2.0})
    reporter.finish()


def test_plain_lines_when_not_a_terminal():
    out = io.StringIO()
    clock = FakeClock()
    drive(ProgressReporter(Console(file=out, force_terminal=False, width=200), clock=clock), clock)
    text = out.getvalue()
    assert "finetune run r1 on cpu" in text
    assert "epoch 1/2  train/loss 1.5  val/rmse 1.4  best val/loss 2 @ epoch 1  30 s" in text
    assert "samples/s" in text  # periodic step lines carry the rate: 16 samples per 10 s
    assert "1.6 samples/s" in text


def test_live_display_on_a_terminal():
    out = io.StringIO()
    clock = FakeClock()
    drive(ProgressReporter(Console(file=out, force_terminal=True, width=200), clock=clock), clock)
    text = out.getvalue()
    assert "epoch 2/2" in text and "ETA" in text and "samples/s" in text and "loss" in text


def test_quiet_shows_only_messages():
    out = io.StringIO()
    clock = FakeClock()
    reporter = ProgressReporter(Console(file=out, force_terminal=False), quiet=True, clock=clock)
    drive(reporter, clock)
    reporter.message("hello")
    assert "epoch" not in out.getvalue() and "hello" in out.getvalue()


def test_format_metrics_skips_absent_keys():
    assert format_metrics({"val/rmse": 1.23456, "other": 3}) == "val/rmse 1.235"


def _drive_pretrain(width: int) -> list[str]:
    """A pre-training run's live display (six headline metrics, a GPU-less device) at ``width``."""
    out = io.StringIO()
    clock = FakeClock()
    # a height too, or TERM=dumb (conftest) makes Rich assume 80 columns
    console = Console(file=out, force_terminal=True, width=width, height=40, color_system=None)
    reporter = ProgressReporter(console, clock=clock)
    reporter.start(run_id="20261201-005906-4871", kind="pretrain", num_epochs=15, start_epoch=0,
                   steps_per_epoch=320, device=torch.device("cpu"))
    for epoch in (1, 2):
        for step in range(320):
            clock.now += 0.5
            reporter.step(epoch=epoch, step=step, loss=2.5 / epoch, num_samples=32)
        reporter.epoch_end(epoch=epoch, metrics={
            "elapsed_s": clock.now, "train/loss": 1.51234, "train/accuracy": 0.2345, "val/loss": 1.7831,
            "val/accuracy": 0.18751, "val/shortcut_accuracy": 0.125, "val/slab_shortcut_accuracy": 0.0912},
            best={"epoch": 1, "metric": "val/loss", "value": 1.7831})
    reporter.finish()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue()).replace("\r", "\n")
    return [line.rstrip() for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("width", [80, 100, 160])
def test_live_display_and_epoch_lines_fit_the_width(width):
    lines = _drive_pretrain(width)
    assert max(len(line) for line in lines[1:]) <= width  # lines[0] names the run (a terminal may wrap it)
    bars = [line for line in lines if "/320" in line]
    assert bars and all(re.search(r"ETA (\d+:\d\d:\d\d|-:--:--)( |$)", line) for line in bars)  # never cut
    assert not any("…" in line for line in lines)
    epoch_lines = [line for line in lines if line.startswith("epoch 2/15  ")]
    assert epoch_lines and "val/accuracy 0.1875" in epoch_lines[0]  # the first validation metric stays
    if width >= 160:
        assert "val/slab_shortcut_accuracy 0.0912" in epoch_lines[0] and "best val/loss 1.783" in epoch_lines[0]


@pytest.mark.parametrize("fields,width,expected", [
    ([("epoch 1/2", 0), ("val/rmse 1.4", 40), ("train/loss 1.5", 20)], 100, "epoch 1/2  val/rmse 1.4  train/loss 1.5"),
    ([("epoch 1/2", 0), ("val/rmse 1.4", 40), ("train/loss 1.5", 20)], 30, "epoch 1/2  val/rmse 1.4"),
    ([("epoch 1/2", 0), ("a long and useful field", 40), ("short", 10)], 20, "epoch 1/2  short"),
    ([("epoch 1/2", 0), ("val/rmse 1.4", 40)], 3, "epoch 1/2"),
], ids=["all-fit", "least-useful-goes", "a-small-field-fills-the-room", "never-dropped"])
def test_fit_fields(fields, width, expected):
    assert fit_fields(fields, width) == expected
