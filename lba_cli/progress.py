"""Live training progress with Rich, or plain lines when stderr is not a terminal.

`ProgressReporter` implements the `lba_cli.train.Reporter` protocol. It shows the epoch and
step, ETA, samples/s, the running loss, the last validation metrics and the best so far,
and on CUDA the GPU's name, memory in use / total and utilisation. The console and the clock
are injectable so that tests can drive it.

On a terminal, the live line and the epoch lines fit the console's width: fields are dropped,
least useful first (`fit_fields`), and the bar shrinks; the ETA is never cut. Plain lines
(a log file) keep every field.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Column

from lba_cli.choices import HEADLINE_METRICS

__all__ = ["ProgressReporter", "format_metrics", "gpu_status", "fit_fields"]

_SHOWN = tuple(dict.fromkeys(name for names in HEADLINE_METRICS.values() for name in names))
_PLAIN_EVERY_S = 30.0


def format_metrics(metrics: dict[str, float], keys: tuple[str, ...] = _SHOWN) -> str:
    """``"train/loss 1.234  val/rmse 1.456"`` for the keys present (default: every run kind's
    `lba_cli.choices.HEADLINE_METRICS`)."""
    return "  ".join(f"{k} {metrics[k]:.4g}" for k in keys if k in metrics)


def fit_fields(fields: list[tuple[str, int]], width: int, sep: str = "  ") -> str:
    """Join the fields that fit in ``width`` characters, leaving out the least useful first.

    Args:
        fields: (text, usefulness) in display order; the lowest usefulness goes first, and
            fields of usefulness 0 or less never go.
        width: characters available.
        sep: between fields.

    Returns:
        The fields kept, in their order (it may still be wider than ``width`` when the
        fields that never go are).
    """
    present = [(i, text, use) for i, (text, use) in enumerate(fields) if text]
    kept = {i for i, _, use in present if use <= 0}
    # most useful first; a field that does not fit leaves room for smaller, less useful ones
    for i, _, _ in sorted((f for f in present if f[2] > 0), key=lambda f: (-f[2], f[0])):
        trial = kept | {i}
        if len(sep.join(t for j, t, _ in present if j in trial)) <= width:
            kept = trial
    return sep.join(t for j, t, _ in present if j in kept)


def _usefulness(name: str, shown: tuple[str, ...]) -> int:
    """Validation metrics above training ones, the first headline metric above the later ones."""
    rank = len(shown) - shown.index(name) if name in shown else 0
    return (40 if name.startswith("val/") and name != "val/loss" else 20) + rank


_ETA_WIDTH = 8  # h:mm:ss and a spare digit for runs of ten hours or more


def gpu_status(device: Any) -> str | None:
    """``"NVIDIA H200 3.1/139.8 GiB 87%"`` on CUDA; None elsewhere."""
    if getattr(device, "type", None) != "cuda":
        return None
    import torch

    index = device.index if device.index is not None else torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    used = torch.cuda.memory_reserved(index) / 2**30
    text = f"{props.name} {used:.1f}/{props.total_memory / 2**30:.1f} GiB"
    try:
        text += f" {torch.cuda.utilization(index)}%"
    except Exception:  # noqa: BLE001 - utilisation needs NVML, which may be absent; the rest still helps
        pass
    return text


class ProgressReporter:
    """Shows training progress on ``console`` (stderr by default).

    Args:
        console: where to draw; a non-terminal console gets plain lines.
        quiet: show nothing but messages.
        clock: monotonic time source, seconds.
    """

    def __init__(self, console: Console | None = None, *, quiet: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.console = console or Console(stderr=True)
        self.quiet = quiet
        self.clock = clock
        self.plain = not self.console.is_terminal
        self._progress: Progress | None = None
        self._task = None
        self._device = None
        self._epoch_start = 0.0
        self._samples = 0
        self._last_plain = 0.0
        self._summary = ""
        self._num_epochs = 0
        self._shown = _SHOWN

    def start(self, *, run_id: str, kind: str, num_epochs: int, start_epoch: int, steps_per_epoch: int,
              device: Any) -> None:
        self._device = device
        self._num_epochs = num_epochs
        self._shown = HEADLINE_METRICS.get(kind, _SHOWN)
        self._epoch_start, self._samples = self.clock(), 0
        self._run_start = self._epoch_start
        self._steps = steps_per_epoch
        self.console.print(f"[bold]{kind}[/] run [cyan]{run_id}[/] on {device}"
                           + (f" ({gpu_status(device)})" if gpu_status(device) else ""), highlight=False,
                               soft_wrap=True)
        if self.quiet or self.plain:
            return
        self._bar = BarColumn(bar_width=self._bar_width())
        self._progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[num_epochs]}",
                       table_column=Column(no_wrap=True)),
            self._bar,
            MofNCompleteColumn(table_column=Column(no_wrap=True)),
            TextColumn("ETA", table_column=Column(no_wrap=True)),
            TimeRemainingColumn(table_column=Column(no_wrap=True, min_width=_ETA_WIDTH)),
            TextColumn("{task.fields[info]}", table_column=Column(no_wrap=True, overflow="ellipsis")),
            console=self.console,
            transient=False,
            get_time=self.clock,
        )
        self._progress.start()
        self._task = self._progress.add_task("train", total=steps_per_epoch, epoch=start_epoch + 1,
                                             num_epochs=num_epochs, info="")

    def _fixed_width(self, bar_width: int) -> int:
        """Width of the parts of the live line that always show: epoch, bar, step count, ETA."""
        epochs = len(str(self._num_epochs))
        steps = len(str(self._steps))
        return (len("epoch /") + 2 * epochs) + 1 + bar_width + 1 + (2 * steps + 1) + 1 + len("ETA") + 1 + _ETA_WIDTH

    def _bar_width(self) -> int:
        """Up to 40 characters, leaving 32 for the fields; never under 10."""
        spare = self.console.width - self._fixed_width(0) - 1 - 32
        return max(10, min(40, spare))

    def _info(self, rate: float | None, loss: float | None, elapsed_s: float) -> str:
        """Loss, best so far, rate, elapsed time and GPU, fitted to what the line has left."""
        gpu = gpu_status(self._device)
        minutes, seconds = divmod(int(elapsed_s), 60)
        fields = [(f"loss {loss:.4g}" if loss is not None else "loss -", 50),
                  (self._summary.strip(), 40),
                  (f"{rate:.1f} samples/s" if rate is not None else "", 30),
                  (f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d} elapsed", 10),
                  (gpu or "", 20)]
        available = self.console.width - self._fixed_width(self._bar.bar_width or 40) - 1
        return fit_fields(fields, max(available, 0))

    def step(self, *, epoch: int, step: int, loss: float, num_samples: int) -> None:
        now = self.clock()
        self._samples += num_samples
        rate = self._samples / max(now - self._epoch_start, 1e-9)
        if self._progress is not None:
            self._progress.update(self._task, completed=step + 1, epoch=epoch,
                                  info=self._info(rate, loss, now - self._run_start))
        elif self.plain and not self.quiet and now - self._last_plain > _PLAIN_EVERY_S:
            self._last_plain = now
            self.console.print(f"epoch {epoch}/{self._num_epochs} step {step + 1}/{self._steps} "
                               f"loss {loss:.4g} {rate:.1f} samples/s", highlight=False, soft_wrap=True)

    def epoch_end(self, *, epoch: int, metrics: dict[str, float], best: dict[str, Any] | None) -> None:
        self._epoch_start, self._samples = self.clock(), 0
        best_text = f"best {best['metric']} {best['value']:.4g} @ epoch {best['epoch']}" if best else ""
        self._summary = f"  {best_text}" if best_text else ""
        fields = [(f"epoch {epoch}/{self._num_epochs}", 0)]
        fields += [(f"{k} {metrics[k]:.4g}", _usefulness(k, self._shown)) for k in self._shown if k in metrics]
        fields += [(best_text, 30), (f"{metrics['elapsed_s']:.0f} s", 5)]
        if self._progress is not None:
            self._progress.console.print(fit_fields(fields, self.console.width), highlight=False, soft_wrap=True)
            if epoch < self._num_epochs:  # the last epoch's bar stays full
                self._progress.reset(self._task, total=self._steps, epoch=epoch + 1, num_epochs=self._num_epochs,
                                     info=self._info(None, None, self.clock() - self._run_start))
        elif not self.quiet:  # a log keeps every field
            self.console.print(fit_fields(fields, 1_000_000), highlight=False, soft_wrap=True)

    def message(self, text: str) -> None:
        console = self._progress.console if self._progress is not None else self.console
        console.print(text, highlight=False, soft_wrap=True, markup=False)  # text, not markup: paths keep "[...]"

    def finish(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
