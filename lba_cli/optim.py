"""Optimiser, learning-rate schedule, gradient clipping and weight averaging of `fit`.

Everything here is a pure function of the step or an object whose state a checkpoint
carries, so an interrupted run resumes with the same learning rate, clipping and average as
one that never stopped:

- `make_optimizer`: AdamW over parameter groups, with weight decay on convolution and linear
  weights only (biases and BatchNorm parameters are not decayed, the usual practice since
  Goyal et al., "Accurate, Large Minibatch SGD", 2017, section 5.1).
- `lr_factor`: the learning rate of a step as a multiple of its group's peak rate.
- `clip_gradients`: the global gradient norm before clipping (reported as
  ``train/grad_norm``), clipped to a maximum when asked.
- `WeightEma`: an exponential moving average of the weights and BatchNorm statistics.
- `recalibrate_batchnorm`: BatchNorm statistics recomputed exactly for the current weights.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from lba_cli.choices import Schedule
from lba_cli.config import TrainConfig

__all__ = ["make_optimizer", "lr_factor", "set_lr", "clip_gradients", "WeightEma", "recalibrate_batchnorm",
           "ONECYCLE_DIV", "ONECYCLE_FINAL_DIV", "ONECYCLE_PCT_START", "EMA_WARMUP"]

# PyTorch's OneCycleLR defaults (div_factor, final_div_factor, pct_start), after Smith & Topin,
# "Super-Convergence: Very Fast Training of Neural Networks Using Large Learning Rates" (2019).
ONECYCLE_DIV = 25.0
ONECYCLE_FINAL_DIV = 1e4
ONECYCLE_PCT_START = 0.3
# The average's decay at update t is min(decay, (1 + t) / (EMA_WARMUP + t)), so that early
# averages are not dominated by the random initial weights (TensorFlow's
# ExponentialMovingAverage with num_updates).
EMA_WARMUP = 10.0


def make_optimizer(groups: list[tuple[Iterable[nn.Parameter], float]], train: TrainConfig) -> torch.optim.AdamW:
    """AdamW over ``groups`` of (parameters, learning-rate scale).

    Each group's peak learning rate is ``train.lr * scale`` (stored as ``base_lr`` in its
    param group; `set_lr` multiplies it by the schedule). With ``train.weight_decay`` > 0 each
    group is split in two: tensors of dimension >= 2 (convolution and linear weights) decay,
    vectors (biases, BatchNorm weights and shifts) do not. With 0 the groups stay as given, so
    the optimizer state of runs made before weight decay existed still loads.

    Args:
        groups: parameters and the factor on ``train.lr`` of each group (e.g. the encoder at
            ``encoder_lr_scale``, the head at 1).
        train: learning rate and weight decay.

    Returns:
        The optimizer, built once over every group whatever is frozen when (a frozen parameter
        gets no gradient and AdamW leaves it and its state alone).
    """
    param_groups: list[dict[str, Any]] = []
    for parameters, scale in groups:
        parameters = list(parameters)
        base_lr = train.lr * scale
        if train.weight_decay > 0:
            decayed = [p for p in parameters if p.ndim >= 2]
            kept = [p for p in parameters if p.ndim < 2]
            param_groups.append({"params": decayed, "lr": base_lr, "base_lr": base_lr,
                                 "weight_decay": train.weight_decay})
            param_groups.append({"params": kept, "lr": base_lr, "base_lr": base_lr, "weight_decay": 0.0})
        else:
            param_groups.append({"params": parameters, "lr": base_lr, "base_lr": base_lr, "weight_decay": 0.0})
    return torch.optim.AdamW(param_groups, lr=train.lr, weight_decay=train.weight_decay)


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: Schedule | str) -> float:
    """The learning rate of optimizer step ``step`` (0-based) as a fraction of the peak rate.

    - warm-up (``step < warmup_steps``): ``constant`` and ``cosine`` rise linearly,
      ``(step + 1) / warmup_steps``; ``onecycle`` rises from 1/25 to 1 along a half cosine;
    - then ``constant``: 1; ``cosine``: ``0.5 (1 + cos(pi t))`` with t going from 0 at the end
      of the warm-up to 1 at ``total_steps`` (Loshchilov & Hutter, "SGDR", ICLR 2017, without
      restarts); ``onecycle``: a half cosine from 1 down to 1/(25 * 1e4).

    ``onecycle`` follows PyTorch's OneCycleLR defaults (Smith & Topin 2019); its rising phase
    is the warm-up, or the first 30 % of the steps when ``warmup_steps`` is 0.

    Args:
        step: optimizer steps taken before this one.
        total_steps: steps of the whole run (epochs x steps per epoch).
        warmup_steps: steps of the warm-up.
        schedule: ``constant``, ``cosine`` or ``onecycle``.

    Returns:
        A factor in (0, 1]; a pure function of its arguments, so resuming needs only the step.
    """
    schedule = Schedule(schedule)
    total_steps = max(total_steps, 1)
    if schedule is Schedule.onecycle:
        rise = warmup_steps if warmup_steps > 0 else max(1, round(ONECYCLE_PCT_START * total_steps))
        low, floor = 1.0 / ONECYCLE_DIV, 1.0 / (ONECYCLE_DIV * ONECYCLE_FINAL_DIV)
        if step < rise:
            return _cosine_between(low, 1.0, step / rise)
        return _cosine_between(1.0, floor, min(1.0, (step - rise) / max(total_steps - rise, 1)))
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule is Schedule.constant:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(total_steps - warmup_steps, 1))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _cosine_between(start: float, end: float, progress: float) -> float:
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, factor: float) -> float:
    """Set every group's learning rate to its ``base_lr`` times ``factor``; returns the first group's."""
    for group in optimizer.param_groups:
        group["lr"] = group.get("base_lr", group["lr"]) * factor
    return optimizer.param_groups[0]["lr"]


def clip_gradients(parameters: Iterable[nn.Parameter], max_norm: float | None) -> float:
    """The global L2 norm of the gradients, after clipping them to ``max_norm`` if given.

    Returns:
        The norm before clipping (what ``train/grad_norm`` reports).
    """
    parameters = [p for p in parameters if p.grad is not None]
    if not parameters:
        return 0.0
    norm = torch.nn.utils.get_total_norm([p.grad for p in parameters])
    if max_norm is not None:
        torch.nn.utils.clip_grads_with_norm_(parameters, max_norm, norm)
    return float(norm)


class WeightEma:
    """Exponential moving average of a model's weights and buffers (BatchNorm statistics).

    After each optimizer step, ``average = d * average + (1 - d) * weights`` with
    ``d = min(decay, (1 + t) / (10 + t))`` at update t. Averaging weights smooths the noise of
    small-batch steps (Polyak & Juditsky 1992; the weight EMA of Tan & Le, "EfficientNet",
    2019, and of timm's ModelEmaV2). Built on `torch.optim.swa_utils.AveragedModel`.

    Args:
        model: the bare model being trained (no DDP wrapper); it is copied.
        decay: the decay per step, in (0, 1).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        from torch.optim.swa_utils import AveragedModel

        self.decay = decay
        self.averaged = AveragedModel(model, multi_avg_fn=self._average, use_buffers=True)
        self.averaged.eval()
        for parameter in self.averaged.parameters():
            parameter.requires_grad_(False)

    @property
    def module(self) -> nn.Module:
        """The averaged model (use it for validation and saving)."""
        return self.averaged.module

    @property
    def num_updates(self) -> int:
        """Updates so far (the first one copies the weights)."""
        return int(self.averaged.n_averaged)

    def update(self, model: nn.Module) -> None:
        """Fold the current weights and buffers of ``model`` into the average."""
        self.averaged.update_parameters(model)

    def load(self, state: dict[str, torch.Tensor], num_updates: int) -> None:
        """Restore an average saved as ``module.state_dict()`` after ``num_updates`` updates."""
        self.module.load_state_dict(state)
        self.averaged.n_averaged.fill_(num_updates)

    @torch.no_grad()
    def _average(self, averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        t = float(num_averaged)
        decay = min(self.decay, (1.0 + t) / (EMA_WARMUP + t))
        for a, c in zip(averaged, current):
            if torch.is_floating_point(a):
                a.lerp_(c, 1.0 - decay)
            else:  # counters (BatchNorm's num_batches_tracked) follow the model
                a.copy_(c)


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, trained: nn.Module, task: Any, epoch: int) -> None:
    """Replace the BatchNorm running statistics of ``model`` by exact averages over an epoch.

    BatchNorm normalises with batch statistics in training and with running averages
    (momentum 0.1) at evaluation. With small batches and weights that move fast, the running
    averages lag behind the weights and the evaluated network differs from the trained one
    ("precise BatchNorm", Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021, section 3).
    Here every BatchNorm layer that is being trained gets the mean of its batch means and
    batch variances over the epoch's training batches, computed with the current weights.
    Dropout is off and no random generator is drawn, so training continues unchanged.

    Args:
        model: the model to recalibrate (the trained weights, or their average).
        trained: the model being trained, whose BatchNorm layers in training mode say which of
            ``model``'s layers to recalibrate (a frozen encoder keeps its statistics); the two
            must have the same structure.
        task: gives ``train_batches(epoch, 0)`` and ``train_step(model, batch)``
            (`lba_cli.train.Task`).
        epoch: the epoch whose batches (and augmentations) are used.
    """
    pairs = [(m, t) for m, t in zip(model.modules(), trained.modules())
             if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    layers = [m for m, t in pairs if t.training and m.track_running_stats]
    if not layers:
        return
    was_training = {module: module.training for module in model.modules()}
    momenta = {layer: layer.momentum for layer in layers}
    model.eval()
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # cumulative average over the batches that follow
        layer.train()
    try:
        for batch in task.train_batches(epoch, 0):
            task.train_step(model, batch)
    finally:
        for layer, momentum in momenta.items():
            layer.momentum = momentum
        for module, mode in was_training.items():
            module.train(mode)
