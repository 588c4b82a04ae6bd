"""The progress reporter: plain lines off a terminal, a live display on one, nothing when quiet."""

from __future__ import annotations

import io

import torch
from rich.console import Console

from lba_cli.progress import ProgressReporter, format_metrics


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
