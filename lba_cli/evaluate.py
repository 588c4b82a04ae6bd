"""`lba evaluate`: whole-split metrics and saved predictions for a fine-tuning run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch import nn

from lba_cli.checkpoints import load_checkpoint
from lba_cli.choices import ALL_COMPLEXES
from lba_cli.config import GridConfig, run_config_from_json
from lba_cli.data.dataset import AffinityDataset
from lba_cli.data.grids_h5 import GridSet, read_grid_set
from lba_cli.devices import autocast_context, resolve_device
from lba_cli.errors import CheckpointMismatchError, ConfigError
from lba_cli.loaders import make_loader
from lba_cli.metrics import REGRESSION_METRICS, bootstrap_intervals, regression_metrics
from lba_cli.models import create_model
from lba_cli.runs import Run, RunStore
from lba_cli.seeding import Stream
from lba_cli.voxel import voxelize_batch

__all__ = ["PREDICTION_SCHEMA", "EvaluationResult", "predict", "evaluate_model", "evaluate_run", "evaluate_baselines",
           "ensemble_rows", "load_affinity_model", "make_affinity_model", "default_split"]

PREDICTION_SCHEMA = {"id": pl.Utf8, "affinity_pk": pl.Float64, "predicted_pk": pl.Float64}
_EVAL_BATCH = 32


@dataclass
class EvaluationResult:
    """Metrics of one run on one split.

    Attributes:
        run_id: the run.
        split: ``train``, ``val``, ``test`` or ``all``.
        metrics: each of `lba_cli.metrics.REGRESSION_METRICS` by name, and ``n`` (examples).
        predictions: frame with `PREDICTION_SCHEMA`, one row per complex of the split.
        path: where the predictions were saved.
        intervals: bootstrap 95 % interval of each metric (`lba_cli.metrics.bootstrap_intervals`).
        data_path: the `lba voxelize` file evaluated (None for baselines given a grid set).
    """

    run_id: str
    split: str
    metrics: dict[str, float]
    predictions: pl.DataFrame
    path: Path | None
    intervals: dict[str, tuple[float, float]]
    data_path: Path | None = None

    def as_row(self, label: str) -> dict[str, object]:
        """One table row: run, label, split, n, each metric, then each metric's interval as
        ``<metric>_ci_low`` and ``<metric>_ci_high`` (unrounded, as every value of the row)."""
        row: dict[str, object] = {"run": self.run_id, "label": label, "split": self.split, "n": int(self.metrics["n"])}
        for metric in REGRESSION_METRICS:
            row[metric.name] = self.metrics[metric.name]
        for metric in REGRESSION_METRICS:
            row[f"{metric.name}_ci_low"], row[f"{metric.name}_ci_high"] = (float(v) for v in
                                                                         self.intervals[metric.name])
        return row


@torch.no_grad()
def predict(model: nn.Module, dataset: AffinityDataset, grid: GridConfig, device: torch.device,
            batch_size: int = _EVAL_BATCH, *, num_rotations: int = 0, seed: int = 0,
            on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    """Predict pK for every example of ``dataset``, in order, in eval mode.

    This is the one prediction function: validation, `lba evaluate` and `lba predict` use it.

    Args:
        model: an affinity model, grids (B, C, X, Y, Z) -> pK (B,).
        dataset: the complexes (their own orientation unless ``num_rotations``).
        grid: voxelization settings of the model.
        device: where to voxelize and run the model.
        batch_size: complexes per forward pass.
        num_rotations: 0 predicts each complex once, in the orientation it was read in; N > 0
            averages N predictions, each of the complex turned by a uniformly random rotation
            drawn from ``sample_rng(seed, Stream.TTA, k, row)`` for k = 0..N-1 (test-time
            augmentation; the same N rotations for every model given the same seed).
        seed: seed of those rotations.
        on_batch: called with the number of complexes of each batch done (progress).

    Returns:
        float64 array of shape (len(dataset),), pK.
    """
    was_training = model.training
    model.eval()
    views = [(dataset, 0)] if num_rotations == 0 else [(dataset.rotated(seed, Stream.TTA), k)
                                                       for k in range(num_rotations)]
    total = np.zeros(len(dataset), np.float64)
    for view, epoch in views:
        out = []
        for batch in make_loader(view, batch_size, shuffle=False, seed=0, epoch=epoch, num_workers=0):
            grids = voxelize_batch(batch["xyz_A"].to(device), batch["channel"].to(device),
                                   batch["is_protein"].to(device), grid)
            with autocast_context(device):
                out.append(model(grids).float().cpu())
            if on_batch is not None:
                on_batch(len(grids))
        total += torch.cat(out).numpy().astype(np.float64)
    model.train(was_training)
    return total / len(views)


def evaluate_model(model: nn.Module, dataset: AffinityDataset, grid: GridConfig, device: torch.device,
                   batch_size: int = _EVAL_BATCH) -> tuple[dict[str, float], pl.DataFrame]:
    """Metrics over every example of ``dataset`` and the predictions frame (`PREDICTION_SCHEMA`)."""
    predicted = predict(model, dataset, grid, device, batch_size)
    measured = dataset.affinity_pk.astype(np.float64)
    metrics = {**regression_metrics(measured, predicted), "n": float(len(measured))}
    frame = pl.DataFrame({"id": dataset.ids.tolist(), "affinity_pk": measured, "predicted_pk": predicted},
                         schema=PREDICTION_SCHEMA)
    return metrics, frame


def make_affinity_model(config: dict, state: dict[str, torch.Tensor], device: torch.device) -> nn.Module:
    """Build the affinity model a run's config describes and load its weights.

    Args:
        config: the run's resolved config (``config.json`` or a checkpoint's ``config``).
        state: its state_dict (a checkpoint's ``model``, or exported weights).
        device: where the model goes.

    Raises:
        CheckpointMismatchError: if the weights do not fit the architecture.
    """
    run_config = run_config_from_json(config)
    model = create_model(run_config.model, run_config.grid.num_channels, "affinity").to(device)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:  # missing, unexpected or misshapen tensors
        first = str(error).strip().splitlines()
        raise CheckpointMismatchError(f"the weights do not fit the {run_config.model.arch} model of their own "
                                      f"config:\n  " + "\n  ".join(first[:6])) from None
    return model


def load_affinity_model(run: Run, device: torch.device, which: str = "best") -> tuple[nn.Module, dict]:
    """Rebuild a fine-tuned model from its checkpoint (architecture from the checkpoint).

    Raises:
        ConfigError: if the run is not a fine-tuning run.
        DataError: if the checkpoint is missing or unreadable.
    """
    if run.kind != "finetune":
        raise ConfigError(f"run {run.id} is a {run.kind} run\nexpected: a fine-tuning run (lba evaluate predicts pK)")
    payload = load_checkpoint(run.checkpoint_path(which), map_location=device)
    return make_affinity_model(payload["config"], payload["model"], device), payload["config"]


def default_split(data_path: Path | None, own_data: Path) -> str:
    """``test`` on the run's own data file; ``all`` on any other (an outside data set is scored
    whole: its own split says nothing about the run)."""
    if data_path is None or Path(data_path).resolve() == Path(own_data).resolve():
        return "test"
    return ALL_COMPLEXES


def evaluate_run(store: RunStore, ref: str, split: str | None = None, data_path: Path | None = None,
                 device: str = "auto", grid_set: GridSet | None = None) -> EvaluationResult:
    """Evaluate a fine-tuning run's best checkpoint on a split and save the predictions.

    Args:
        store: the run store.
        ref: run id, prefix, name or directory.
        split: ``train``, ``val``, ``test`` or ``all`` (every complex of the file); None:
            `default_split`.
        data_path: another `lba voxelize` file (default: the run's own). Predictions on
            other data are saved as ``predictions_<split>_<file stem>.parquet`` and do not
            change the run's recorded metrics.
        device: ``auto``, ``cpu`` or ``cuda``.
        grid_set: the data already in memory (saves re-reading the file).

    Raises:
        RunNotFoundError, ConfigError, DataError: on a bad reference, run kind or data file.
    """
    run = store.resolve(ref)
    torch_device = resolve_device(device)
    model, config = load_affinity_model(run, torch_device)
    own_data = Path(config["finetune"]["data_path"])
    path = Path(data_path) if data_path is not None else own_data
    split = split or default_split(data_path, own_data)
    grid = run_config_from_json(config).grid
    dataset = AffinityDataset(path, split, grid, seed=0, rotate=False, grid_set=grid_set)
    if dataset.data.grid != grid:
        differing = [f"{f}: file {getattr(dataset.data.grid, f)!r}, run {getattr(grid, f)!r}"
                     for f in grid.__dataclass_fields__ if getattr(dataset.data.grid, f) != getattr(grid, f)]
        raise ConfigError(f"{path} was voxelized with other settings than run {run.id} was trained on:\n  "
                          + "\n  ".join(differing))
    metrics, frame = evaluate_model(model, dataset, grid, torch_device)
    is_own = path.resolve() == own_data.resolve()
    saved = run.write_predictions(split if is_own else f"{split}_{path.stem}", frame)
    if is_own and split != ALL_COMPLEXES:  # a run's metrics are per split of its own file
        recorded = dict(run.status.get("metrics", {}))
        recorded.update({f"{split}/{k}": v for k, v in metrics.items()})
        run.update_status(metrics=recorded)
    intervals = bootstrap_intervals(frame["affinity_pk"].to_numpy(), frame["predicted_pk"].to_numpy())
    return EvaluationResult(run.id, split, metrics, frame, saved, intervals, path)


def evaluate_baselines(data_path: Path, split: str, grid_set: GridSet | None = None,
                       train_path: Path | None = None) -> list[EvaluationResult]:
    """Metrics and intervals of the `lba_cli.baselines` on one split of an `lba voxelize` file.

    Args:
        data_path: the file evaluated.
        split: ``train``, ``val``, ``test`` or ``all``.
        grid_set: its contents already in memory.
        train_path: the file whose train split fits the baselines, as the model was trained
            (default: ``data_path`` itself). Give the run's own file when evaluating on
            outside data, so that the baselines learn nothing from the complexes scored.
    """
    from lba_cli.baselines import baseline_predictions

    data = grid_set if grid_set is not None else read_grid_set(Path(data_path))
    same = train_path is None or Path(train_path).resolve() == Path(data_path).resolve()
    train_data = data if same else read_grid_set(Path(train_path))
    rows = data.indices(split)
    measured = data.affinity_pk[rows].astype(np.float64)
    results = []
    for name, predicted in baseline_predictions(data, split, train_data).items():
        frame = pl.DataFrame({"id": data.ids[rows].tolist(), "affinity_pk": measured, "predicted_pk": predicted},
                             schema=PREDICTION_SCHEMA)
        metrics = {**regression_metrics(measured, predicted), "n": float(len(rows))}
        results.append(EvaluationResult(f"baseline: {name}", split, metrics, frame, None,
                                        bootstrap_intervals(measured, predicted)))
    return results


def ensemble_rows(store: RunStore, evaluated: list[tuple[Run, EvaluationResult]]) -> list[dict[str, object]]:
    """Table rows of the seed ensembles among evaluated runs (`lba_cli.ensembles`).

    For each group of two or more runs that differ only in their seed
    (`lba_cli.compare.replicate_groups`), two rows in the layout of `EvaluationResult.as_row`:
    ``mean ± std of N runs`` (each metric averaged over the runs, and ``<metric> std``: its
    sample std over the runs, ddof 1; no bootstrap interval), and ``ensemble of N`` (the metrics
    of the runs' mean prediction per complex, with bootstrap intervals).

    Args:
        store: the run store (for run labels).
        evaluated: each run with its `evaluate_run` result, all on the same split.

    Raises:
        DataError: if the members of a group predicted different complexes.
    """
    from lba_cli.compare import replicate_groups
    from lba_cli.ensembles import summarise_replicates

    by_id = {run.id: result for run, result in evaluated}
    rows: list[dict[str, object]] = []
    for label, members in replicate_groups([run for run, _ in evaluated], store):
        if len(members) < 2:
            continue
        results = [by_id[m.id] for m in members]
        summary = summarise_replicates([r.predictions for r in results])
        per_run: dict[str, object] = {"run": f"mean ± std of {summary.num_runs} runs", "label": label,
                                      "split": results[0].split, "n": int(summary.ensemble["n"])}
        for metric in REGRESSION_METRICS:
            per_run[metric.name] = summary.mean[metric.name]
        for metric in REGRESSION_METRICS:
            per_run[f"{metric.name} std"] = summary.std[metric.name]
        ensemble = EvaluationResult(f"ensemble of {summary.num_runs}", results[0].split, summary.ensemble,
                                    summary.predictions, None, summary.intervals)
        rows.extend([per_run, ensemble.as_row(label)])
    return rows
