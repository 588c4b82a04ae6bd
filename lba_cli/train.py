"""One training loop for pre-training and fine-tuning.

`fit` reads top to bottom: for each epoch, train on the task's batches, validate, record
the epoch's metrics in the run, write the ``last`` checkpoint, and the ``best`` one when the
validation loss improved (SPEC §8.1), then stop early if patience runs out. What differs
between pre-training and fine-tuning lives in a `Task`. The loop never prints: it reports
through a `Reporter`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from lba_cli.checkpoints import save_checkpoint
from lba_cli.config import TrainConfig
from lba_cli.runs import Run, utc_now

__all__ = ["Reporter", "NullReporter", "Task", "FitResult", "fit", "HEARTBEAT_EVERY_S"]

HEARTBEAT_EVERY_S = 30.0


class Reporter(Protocol):
    """What the core tells whoever shows progress (see `lba_cli.progress`).

    Epochs are numbered from 1; ``step`` counts batches from 0 within the epoch.
    """

    def start(self, *, run_id: str, kind: str, num_epochs: int, start_epoch: int, steps_per_epoch: int,
              device: torch.device) -> None: ...

    def step(self, *, epoch: int, step: int, loss: float, num_samples: int) -> None: ...

    def epoch_end(self, *, epoch: int, metrics: dict[str, float], best: dict[str, Any] | None) -> None: ...

    def message(self, text: str) -> None: ...

    def finish(self) -> None: ...


class NullReporter:
    """A reporter that shows nothing (headless use, tests)."""

    def start(self, **_: Any) -> None:
        pass

    def step(self, **_: Any) -> None:
        pass

    def epoch_end(self, **_: Any) -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def finish(self) -> None:
        pass


class Task(Protocol):
    """What `fit` needs from pre-training or fine-tuning.

    ``train_step`` returns the mean loss of the batch (a scalar tensor with gradient), the
    number of examples, and extra per-batch statistics (name -> (sum, count)) averaged over
    the epoch as ``train/<name>``. ``validate`` returns whole-split metrics named
    ``val/<metric>``, including ``val/loss``.
    """

    def steps_per_epoch(self) -> int: ...

    def train_batches(self, epoch: int) -> Iterable[Any]: ...

    def prepare_train(self, model: nn.Module) -> None: ...

    def train_step(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, int, dict[str, tuple[float, int]]]: ...

    def validate(self, model: nn.Module) -> dict[str, float]: ...


@dataclass
class FitResult:
    """Outcome of `fit`.

    Attributes:
        history: one dict of metrics per epoch.
        best: ``{"epoch", "metric", "value"}`` of the best validation epoch.
        stopped_early: patience ran out before ``num_epochs``.
    """

    history: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    stopped_early: bool = False


def fit(
    model: nn.Module,
    task: Task,
    optimizer: torch.optim.Optimizer,
    train: TrainConfig,
    run: Run,
    config: dict[str, Any],
    reporter: Reporter,
    device: torch.device,
    *,
    monitor: str = "val/loss",
    start_epoch: int = 0,
    history: list[dict[str, float]] | None = None,
    best: dict[str, Any] | None = None,
    step: int = 0,
) -> FitResult:
    """Train ``model`` on ``task`` and keep the run's metrics and checkpoints up to date.

    Args:
        model: on ``device`` already.
        task: batches, losses and validation.
        optimizer: built once over every parameter group (SPEC §8.9).
        train: epochs, patience.
        run: where metrics, checkpoints and status go.
        config: the run's resolved configuration, stored in every checkpoint.
        reporter: progress sink.
        device: the training device.
        monitor: the validation metric that picks ``best`` (lower is better).
        start_epoch, history, best, step: the state to resume from (``start_epoch`` = epochs
            already completed).

    Epochs are numbered from 1 in the metrics, the checkpoints and the reports.

    Returns:
        The `FitResult`. On KeyboardInterrupt the run is marked ``interrupted`` (the last
        complete epoch stays in ``last``); on any other error ``failed``; both re-raise.
    """
    history = list(history or [])
    result = FitResult(history=history, best=best)
    started = time.monotonic() - (history[-1]["elapsed_s"] if history else 0.0)
    run.update_status(status="running", started_at=run.status.get("started_at") or utc_now(), heartbeat_at=utc_now())
    reporter.start(run_id=run.id, kind=config["kind"], num_epochs=train.num_epochs, start_epoch=start_epoch,
                   steps_per_epoch=task.steps_per_epoch(), device=device)
    epochs_without_gain = _epochs_since_best(history, best)
    last_beat = time.monotonic()
    try:
        for epoch in range(start_epoch, train.num_epochs):
            model.train()
            task.prepare_train(model)
            loss_sum, count, extras = 0.0, 0, {}
            for batch_step, batch in enumerate(task.train_batches(epoch)):
                loss, num, extra = task.train_step(model, batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                value = float(loss.detach())
                loss_sum += value * num
                count += num
                for name, (total, n) in extra.items():
                    s, c = extras.get(name, (0.0, 0))
                    extras[name] = (s + total, c + n)
                reporter.step(epoch=epoch + 1, step=batch_step, loss=value, num_samples=num)
                if time.monotonic() - last_beat > HEARTBEAT_EVERY_S:
                    run.heartbeat()
                    last_beat = time.monotonic()
            if count == 0:
                raise RuntimeError("the training split produced no batches")
            number = epoch + 1  # epochs are numbered from 1 in metrics, checkpoints and messages
            metrics = {"epoch": number, "step": step, "elapsed_s": time.monotonic() - started,
                       "train/loss": loss_sum / count}
            metrics.update({f"train/{name}": s / max(c, 1) for name, (s, c) in extras.items()})
            metrics.update(task.validate(model))
            history.append(metrics)
            run.write_metrics(history)

            value = metrics[monitor]
            improved = math.isfinite(value) and (result.best is None or value < result.best["value"])
            if improved:
                result.best = {"epoch": number, "metric": monitor, "value": value}
                epochs_without_gain = 0
            else:
                epochs_without_gain += 1
            payload = {"config": config, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                       "epoch": number, "step": step, "best": result.best, "history": history,
                       "rng": torch.get_rng_state()}
            save_checkpoint(run.checkpoint_path("last"), payload)
            if improved:
                save_checkpoint(run.checkpoint_path("best"), payload)
            best_metrics = next(h for h in history if h["epoch"] == result.best["epoch"]) if result.best else metrics
            run.update_status(heartbeat_at=utc_now(), epochs_done=number, best_epoch=(result.best or {}).get("epoch"),
                              metrics={k: v for k, v in best_metrics.items() if "/" in k})
            last_beat = time.monotonic()
            reporter.epoch_end(epoch=number, metrics=metrics, best=result.best)
            if train.patience is not None and epochs_without_gain >= train.patience:
                result.stopped_early = True
                reporter.message(f"early stop: no better {monitor} for {train.patience} epochs")
                break
    except KeyboardInterrupt:
        run.update_status(status="interrupted", finished_at=utc_now())
        run.log("interrupted by the user; `last` holds the last complete epoch")
        reporter.finish()
        raise
    except BaseException as error:
        run.update_status(status="failed", finished_at=utc_now(), error=repr(error))
        run.log(f"failed: {error!r}")
        reporter.finish()
        raise
    reporter.finish()
    return result


def _epochs_since_best(history: list[dict[str, float]], best: dict[str, Any] | None) -> int:
    if not history or best is None:
        return 0
    return int(history[-1]["epoch"] - best["epoch"])
