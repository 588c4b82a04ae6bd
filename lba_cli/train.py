"""One training loop for pre-training and fine-tuning.

`fit` reads top to bottom: for each epoch, train on the task's batches, validate, record
the epoch's metrics in the run, write the ``last`` checkpoint, and the ``best`` one when the
validation loss improved (the original work kept only final weights and lost good runs),
then stop early if patience runs out. What differs between pre-training and fine-tuning
lives in a `Task`. The loop never prints: it reports through a `Reporter`.

Stopping and resuming. SIGINT (Ctrl-C) or SIGTERM asks the loop to stop after the current
step: it writes ``last`` with the position inside the epoch, marks the run ``interrupted``
and raises KeyboardInterrupt; a second signal stops at once. `fit` resumes from such a
checkpoint (or from any epoch's ``last``) exactly where it stopped: same weights, optimizer
state, random-generator state, metric history and, mid-epoch, the same remaining batches.
A process killed outright (SIGKILL) leaves ``last`` at its latest epoch and the run reads as
``crashed`` (see `lba_cli.runs`).

Each step sets the learning rate from the step number alone (`lba_cli.optim.lr_factor`),
clips the gradients if asked, steps the optimizer and updates the weight average (EMA) if
there is one. With an average, validation, ``best`` and the checkpoints' ``model`` are the
average; ``last`` also holds the trained weights (``train_model``) and the number of updates,
so a resumed run continues both exactly. With ``precise_bn``, the BatchNorm statistics of the
validated weights are recomputed over the epoch's training batches before validation
(`lba_cli.optim.recalibrate_batchnorm`).
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from lba_cli.checkpoints import copy_checkpoint, save_checkpoint
from lba_cli.config import TrainConfig
from lba_cli.distributed import DistContext, all_reduce_sums, broadcast_object, unwrap
from lba_cli.loaders import batch_bounds
from lba_cli.optim import WeightEma, clip_gradients, lr_factor, recalibrate_batchnorm, set_lr
from lba_cli.runs import Run, utc_now

__all__ = ["Reporter", "NullReporter", "Task", "TaskBase", "FitResult", "fit", "HEARTBEAT_EVERY_S",
           "smallest_batchnorm_values"]

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
    """A reporter that shows nothing (headless use, tests, ranks other than 0)."""

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

    ``prepare_train(model, epoch)`` runs after ``model.train()`` at the start of each epoch
    (e.g. to freeze the encoder). ``train_batches(epoch, skip_batches)`` yields the epoch's
    batches for this process,
    leaving out the first ``skip_batches``. ``train_step`` returns the mean loss of the batch
    (a scalar tensor with gradient), the number of examples, and extra statistics
    (name -> (sum, count)) averaged over the epoch as ``train/<name>``. ``validate`` gets the
    bare model (no DDP wrapper) and returns whole-split metrics named ``val/<metric>``,
    including ``val/loss``.
    """

    def steps_per_epoch(self) -> int: ...

    def train_batches(self, epoch: int, skip_batches: int) -> Iterable[Any]: ...

    def prepare_train(self, model: nn.Module, epoch: int) -> None: ...

    def train_step(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, int, dict[str, tuple[float, int]]]: ...

    def validate(self, model: nn.Module) -> dict[str, float]: ...


class TaskBase:
    """What both tasks share: their splits, config, device and share of each epoch.

    Args:
        train_set, val_set: datasets of the task.
        config: the run configuration (its ``train`` section sets the batch size).
        device: the training device.
        ctx: this process's place under torch.distributed.
    """

    def __init__(self, train_set: Any, val_set: Any, config: Any, device: torch.device, ctx: DistContext) -> None:
        self.train_set, self.val_set = train_set, val_set
        self.config = config
        self.device = device
        self.ctx = ctx

    def train_batch_bounds(self) -> list[tuple[int, int]]:
        """The [start, stop) of each training batch of an epoch of this process (a last batch
        of one example joins the one before: `lba_cli.loaders.batch_bounds`)."""
        per_process = math.ceil(len(self.train_set) / self.ctx.world_size)
        return batch_bounds(per_process, self.config.train.batch_size, merge_single_last=True)

    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch of this process."""
        return len(self.train_batch_bounds())

    def batch_note(self) -> str | None:
        """What the user should know about the training batches (a lone last example merged)."""
        per_process = math.ceil(len(self.train_set) / self.ctx.world_size)
        size = self.config.train.batch_size
        if per_process > size and per_process % size == 1:
            return (f"the last training batch would hold one example ({per_process} per epoch, batch size {size}): it "
                    f"joins the batch before it ({size + 1} examples), since BatchNorm in training mode fails on a "
                    "lone example once the encoder's feature map has shrunk to 1x1x1")
        return None

    def check_batches(self, model: nn.Module) -> None:
        """Refuse, before training, batches that BatchNorm cannot train on: one example each
        (a training split of one, or --batch-size 1) while the encoder's feature map ends at
        1x1x1 on this grid (one value per channel). Evaluation runs in eval mode and is never
        affected.

        Args:
            model: the bare model (with an ``encoder``), on the training device.

        Raises:
            ConfigError: saying why and what to change.
        """
        if min(stop - start for start, stop in self.train_batch_bounds()) > 1:
            return
        grid = self.config.grid
        shape = (grid.num_channels,) + (grid.box_size_voxels,) * 3
        if smallest_batchnorm_values(model.encoder, shape) != 1:
            return
        from lba_cli.errors import ConfigError

        per_process = math.ceil(len(self.train_set) / self.ctx.world_size)
        raise ConfigError(f"training batches of one example: {per_process} training example(s) per process, batch size "
                          f"{self.config.train.batch_size}; on a {grid.box_size_voxels}-voxel grid the encoder's "
                          "last feature map is 1x1x1, and BatchNorm in training mode cannot normalise one value per "
                          "channel\nexpected: --batch-size 2 or more and at least 2 training examples, or a larger "
                          "--box-size")


def smallest_batchnorm_values(encoder: nn.Module, input_shape: tuple[int, ...]) -> int | None:
    """The fewest values per channel that any BatchNorm layer of ``encoder`` sees for one
    example (the product of its input's spatial sizes); None without BatchNorm.

    Runs one example of zeros through the encoder in eval mode, without gradients (no
    statistics change).

    Args:
        encoder: the network, on its device.
        input_shape: one example's shape, (C, X, Y, Z).
    """
    sizes: list[int] = []

    def record(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        sizes.append(args[0][0].numel() // args[0].shape[1])  # (1, C, X, Y, Z) -> X * Y * Z

    layers = [m for m in encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    handles = [layer.register_forward_pre_hook(record) for layer in layers]
    was_training = encoder.training
    device = next(encoder.parameters()).device
    try:
        encoder.eval()
        with torch.no_grad():
            encoder(torch.zeros((1, *input_shape), device=device))
    finally:
        encoder.train(was_training)
        for handle in handles:
            handle.remove()
    return min(sizes) if sizes else None


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


class _StopRequest:
    """Set by SIGINT/SIGTERM; the loop stops at the next step boundary."""

    def __init__(self) -> None:
        self.requested = False


@contextmanager
def _graceful_stop() -> Iterator[_StopRequest]:
    request = _StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handler(signum: int, frame: Any) -> None:
        if request.requested:  # the second signal: stop now
            raise KeyboardInterrupt
        request.requested = True

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield request
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def fit(
    model: nn.Module,
    task: Task,
    optimizer: torch.optim.Optimizer,
    train: TrainConfig,
    run: Run | None,
    config: dict[str, Any],
    reporter: Reporter,
    device: torch.device,
    *,
    monitor: str = "val/loss",
    resume: dict[str, Any] | None = None,
    ctx: DistContext = DistContext(),
) -> FitResult:
    """Train ``model`` on ``task`` and keep the run's metrics and checkpoints up to date.

    Args:
        model: on ``device`` already (wrapped in DistributedDataParallel when ``ctx.enabled``).
        task: batches, losses and validation.
        optimizer: built once over every parameter group (so resuming a freeze/unfreeze
            schedule finds the same groups).
        train: epochs, patience, schedule, warm-up, clipping, weight averaging, precise BatchNorm.
        run: where metrics, checkpoints and status go (None on ranks other than 0).
        config: the run's resolved configuration, stored in every checkpoint.
        reporter: progress sink.
        device: the training device.
        monitor: the validation metric that picks ``best`` (lower is better).
        resume: a ``last`` checkpoint payload to continue from (the trained weights, i.e.
            ``train_model`` if present else ``model``, and the optimizer state already loaded
            by the caller; the weight average is restored here).
        ctx: this process's place under torch.distributed.

    Returns:
        The `FitResult`. Epochs are numbered from 1 in the metrics, checkpoints and reports.

    Raises:
        KeyboardInterrupt: after SIGINT/SIGTERM, once ``last`` is written and the run is
            marked ``interrupted``. Any other error marks the run ``failed`` and re-raises.
    """
    resume = resume or {}
    history: list[dict[str, float]] = list(resume.get("history", []))
    result = FitResult(history=history, best=resume.get("best"))
    step = int(resume.get("step", 0))
    start_epoch = int(resume.get("epoch", 0))  # completed epochs
    partial = resume.get("partial")  # position inside an interrupted epoch
    if "rng" in resume:
        torch.set_rng_state(resume["rng"])
    started = time.monotonic() - (history[-1]["elapsed_s"] if history else 0.0)
    bare = unwrap(model)
    steps_per_epoch = task.steps_per_epoch()
    total_steps = steps_per_epoch * train.num_epochs
    warmup_steps = round(train.warmup_epochs * steps_per_epoch)
    ema = WeightEma(bare, train.ema_decay) if train.ema_decay > 0 else None
    if ema is not None and "ema_updates" in resume:
        ema.load(resume["model"], int(resume["ema_updates"]))
    evaluated = ema.module if ema is not None else bare  # what is validated, selected and saved
    if run is not None:
        run.update_status(status="running", started_at=run.status.get("started_at") or utc_now(),
                          heartbeat_at=utc_now(), finished_at=None)
    reporter.start(run_id=run.id if run else "", kind=config["kind"], num_epochs=train.num_epochs,
                   start_epoch=start_epoch, steps_per_epoch=steps_per_epoch, device=device)
    epochs_without_gain = int(history[-1]["epoch"] - result.best["epoch"]) if history and result.best else 0
    last_beat = time.monotonic()

    def payload(epoch_done: int, position: dict[str, Any] | None) -> dict[str, Any]:
        out = {"config": config, "model": evaluated.state_dict(), "optimizer": optimizer.state_dict(),
               "epoch": epoch_done, "step": step, "best": result.best, "history": history,
               "rng": torch.get_rng_state(), "partial": position}
        if ema is not None:
            out.update(train_model=bare.state_dict(), ema_updates=ema.num_updates)
        return out

    try:
        with _graceful_stop() as stop:
            for epoch in range(start_epoch, train.num_epochs):
                number = epoch + 1
                model.train()
                task.prepare_train(bare, epoch)
                skip = partial["next_batch"] if partial else 0
                loss_sum, count = (partial["loss_sum"], partial["count"]) if partial else (0.0, 0)
                extras: dict[str, tuple[float, int]] = {k: tuple(v) for k, v in (partial or {}).get("extras",
                                                                                                    {}).items()}
                partial = None
                for batch_step, batch in enumerate(task.train_batches(epoch, skip), start=skip):
                    loss, num, extra = task.train_step(model, batch)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    grad_norm = clip_gradients(model.parameters(), train.clip_grad_norm or None)
                    lr = set_lr(optimizer, lr_factor(step, total_steps, warmup_steps, train.schedule))
                    optimizer.step()
                    if ema is not None:
                        ema.update(bare)
                    step += 1
                    value = float(loss.detach())
                    loss_sum += value * num
                    count += num
                    extra = {**extra, "grad_norm": (grad_norm, 1), "lr": (lr, 1)}
                    for name, (total, n) in extra.items():
                        s, c = extras.get(name, (0.0, 0))
                        extras[name] = (s + total, c + n)
                    reporter.step(epoch=number, step=batch_step, loss=value, num_samples=num)
                    if _agree_to_stop(stop.requested, ctx):
                        position = {"next_batch": batch_step + 1, "loss_sum": loss_sum, "count": count,
                                    "extras": {k: list(v) for k, v in extras.items()}}
                        if run is not None:
                            save_checkpoint(run.checkpoint_path("last"), payload(epoch, position))
                        raise KeyboardInterrupt
                    if run is not None and time.monotonic() - last_beat > HEARTBEAT_EVERY_S:
                        run.heartbeat()
                        last_beat = time.monotonic()

                totals = all_reduce_sums([loss_sum, count] + [x for v in extras.values() for x in v], ctx)
                if totals[1] == 0:
                    raise RuntimeError("the training split produced no batches")
                metrics = {"epoch": number, "step": step, "elapsed_s": time.monotonic() - started,
                           "train/loss": totals[0] / totals[1]}
                for i, name in enumerate(extras):
                    metrics[f"train/{name}"] = totals[2 + 2 * i] / max(totals[3 + 2 * i], 1)
                if train.precise_bn and ctx.is_main:
                    recalibrate_batchnorm(evaluated, bare, task, epoch)
                metrics.update(broadcast_object(task.validate(evaluated) if ctx.is_main else None, ctx))
                history.append(metrics)

                value = metrics[monitor]
                improved = math.isfinite(value) and (result.best is None or value < result.best["value"])
                if improved:
                    result.best = {"epoch": number, "metric": monitor, "value": value}
                    epochs_without_gain = 0
                else:
                    epochs_without_gain += 1
                if run is not None:
                    run.write_metrics(history)
                    save_checkpoint(run.checkpoint_path("last"), payload(number, None))
                    if improved:
                        copy_checkpoint(run.checkpoint_path("last"), run.checkpoint_path("best"))
                    best_row = (next(h for h in history if h["epoch"] == result.best["epoch"]) if result.best
                                else metrics)
                    run.log(f"epoch {number}: " + "  ".join(f"{k} {v:.4g}" for k, v in metrics.items() if "/" in k))
                    run.update_status(heartbeat_at=utc_now(), epochs_done=number,
                                      best_epoch=(result.best or {}).get("epoch"),
                                      metrics={k: v for k, v in best_row.items() if "/" in k})
                    last_beat = time.monotonic()
                reporter.epoch_end(epoch=number, metrics=metrics, best=result.best)
                if train.patience is not None and epochs_without_gain >= train.patience:
                    result.stopped_early = True
                    reporter.message(f"early stop: no better {monitor} for {train.patience} epochs")
                    break
    except KeyboardInterrupt:
        if run is not None:
            run.update_status(status="interrupted", finished_at=utc_now())
            run.log(f"interrupted at step {step}; resume with --resume {run.id}")
            reporter.message(f"interrupted at step {step}: `last` saved; continue with "
                             f"`lba {config['kind']} --resume {run.id}`")
        reporter.finish()
        raise
    except BaseException as error:
        if run is not None:
            run.update_status(status="failed", finished_at=utc_now(), error=repr(error))
            run.log(f"failed: {error!r}")
        reporter.finish()
        raise
    reporter.finish()
    return result


def _agree_to_stop(requested: bool, ctx: DistContext) -> bool:
    """Stop only when every rank stops at the same step: any rank's request counts for all."""
    if not ctx.enabled:
        return requested
    return all_reduce_sums([1.0 if requested else 0.0], ctx)[0] > 0
