"""Live training progress with Rich, or plain lines when stderr is not a terminal.

`ProgressReporter` implements the `lba_cli.train.Reporter` protocol. It shows the epoch and
step, ETA, samples/s, the running loss, the last validation metrics and the best so far,
and on CUDA the GPU's name, memory in use / total and utilisation. The console and the clock
are injectable so that tests can drive it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from lba_cli.choices import HEADLINE_METRICS

__all__ = ["ProgressReporter", "format_metrics", "gpu_status"]

_SHOWN = tuple(dict.fromkeys(name for names in HEADLINE_METRICS.values() for name in names))
_PLAIN_EVERY_S = 30.0


def format_metrics(metrics: dict[str, float], keys: tuple[str, ...] = _SHOWN) -> str:
    """``"train/loss 1.234  val/rmse 1.456"`` for the keys present (default: every run kind's
    `lba_cli.choices.HEADLINE_METRICS`)."""
    return "  ".join(f"{k} {metrics[k]:.4g}" for k in keys if k in metrics)


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
        self._steps = steps_per_epoch
        self.console.print(f"[bold]{kind}[/] run [cyan]{run_id}[/] on {device}"
                           + (f" ({gpu_status(device)})" if gpu_status(device) else ""), highlight=False,
                               soft_wrap=True)
        if self.quiet or self.plain:
            return
        self._progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[num_epochs]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[rate]}"),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[summary]}"),
            console=self.console,
            transient=False,
            get_time=self.clock,
        )
        self._progress.start()
        self._task = self._progress.add_task("train", total=steps_per_epoch, epoch=start_epoch + 1,
                                             num_epochs=num_epochs, rate="", loss="-", summary="")

    def step(self, *, epoch: int, step: int, loss: float, num_samples: int) -> None:
        now = self.clock()
        self._samples += num_samples
        rate = self._samples / max(now - self._epoch_start, 1e-9)
        if self._progress is not None:
            gpu = gpu_status(self._device)
            self._progress.update(self._task, completed=step + 1, epoch=epoch, loss=f"{loss:.4g}",
                                  rate=f"{rate:.1f} samples/s", summary=(gpu or "") + self._summary)
        elif self.plain and not self.quiet and now - self._last_plain > _PLAIN_EVERY_S:
            self._last_plain = now
            self.console.print(f"epoch {epoch}/{self._num_epochs} step {step + 1}/{self._steps} "
                               f"loss {loss:.4g} {rate:.1f} samples/s", highlight=False, soft_wrap=True)

    def epoch_end(self, *, epoch: int, metrics: dict[str, float], best: dict[str, Any] | None) -> None:
        self._epoch_start, self._samples = self.clock(), 0
        best_text = f"best {best['metric']} {best['value']:.4g} @ epoch {best['epoch']}" if best else ""
        self._summary = f"  {best_text}" if best_text else ""
        line = (f"epoch {epoch}/{self._num_epochs}  {format_metrics(metrics, self._shown)}  {best_text}  "
                f"{metrics['elapsed_s']:.0f} s")
        if self._progress is not None:
            self._progress.console.print(line, highlight=False, soft_wrap=True)
            if epoch < self._num_epochs:  # the last epoch's bar stays full
                self._progress.reset(self._task, total=self._steps, epoch=epoch + 1, num_epochs=self._num_epochs,
                                     rate="", loss="-", summary=self._summary)
        elif not self.quiet:
            self.console.print(line, highlight=False, soft_wrap=True)

    def message(self, text: str) -> None:
        console = self._progress.console if self._progress is not None else self.console
        console.print(text, highlight=False, soft_wrap=True, markup=False)  # text, not markup: paths keep "[...]"

    def finish(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
