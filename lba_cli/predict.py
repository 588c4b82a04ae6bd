"""`lba predict`: pK of new complexes from trained models, alone or as an ensemble.

Complexes are read exactly as `lba voxelize` reads them (`lba_cli.data.build.read_sources`,
every format), except that a measured affinity is optional; they are cropped to the same box
and predicted with the one prediction function of `lba_cli.evaluate` (the one validation and
`lba evaluate` use). Several models (runs, a replicate group, exported folders) give one row
per complex with the mean over models and their spread.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from lba_cli.atomic import atomic_path, check_writable
from lba_cli.choices import ALL_COMPLEXES, LabelUnit, RunKind, SourceFormat
from lba_cli.config import GridConfig, run_config_from_json
from lba_cli.data.records import Skipped, SourceOptions
from lba_cli.errors import ConfigError, RunNotFoundError
from lba_cli.export import ExportedModel, check_run_data, is_export_dir, read_export
from lba_cli.runs import Run, RunStore, is_run_dir

__all__ = ["Predictor", "PredictionReport", "PREDICTIONS_SCHEMA", "SDF_PROPERTIES", "split_models_and_sources",
           "resolve_predictors", "predict_complexes", "write_predictions_table", "write_series_sdf"]

PREDICTIONS_SCHEMA = {"id": pl.Utf8, "predicted_pk": pl.Float64, "std": pl.Float64, "n_models": pl.Int64,
                      "affinity_pk": pl.Float64, "source": pl.Utf8}
# Properties added to each record of a series SDF written back with the predictions.
SDF_PROPERTIES = {"predicted_pk": "lba_predicted_pk", "std": "lba_predicted_pk_std", "n_models": "lba_n_models"}
_SKIPPED_PROPERTY = "lba_skipped"


@dataclass
class Predictor:
    """One model that predicts pK: a fine-tuning run or an exported model folder.

    Attributes:
        name: the run id or the folder.
        label: how messages name it (the run's name or label).
        config: its resolved run config (as in ``config.json``).
        run: the run, when it is one.
        export: the exported folder, when it is one.
    """

    name: str
    label: str
    config: dict[str, Any]
    run: Run | None = None
    export: ExportedModel | None = None

    @property
    def grid(self) -> GridConfig:
        """The voxelization the model was trained on."""
        return run_config_from_json(self.config).grid

    def load_model(self, device: Any) -> Any:
        """Build the model and load its weights (the run's best checkpoint, or the export's)."""
        from lba_cli.evaluate import load_affinity_model, make_affinity_model

        if self.run is not None:
            check_run_data(self.run)
            return load_affinity_model(self.run, device)[0]
        return make_affinity_model(self.config, self.export.read_weights(device), device)


_DATA_SUFFIXES = (".pdb", ".cif", ".mmcif", ".pdbqt", ".sdf", ".mol2", ".mol", ".csv", ".gz", ".h5", ".mdb")


def _is_model(arg: str) -> bool:
    """A run directory or exported folder; or a reference to a run (no such path, and it does
    not look like a data file or a path, so that a mistyped source is reported as one)."""
    path = Path(arg)
    if is_export_dir(path) or is_run_dir(path):
        return True
    return not path.exists() and "/" not in arg and not arg.lower().endswith(_DATA_SUFFIXES)


def split_models_and_sources(args: list[str]) -> tuple[list[str], list[Path]]:
    """Tell the models from the sources in ``RUN... SOURCES...``.

    Models come first: run ids, prefixes, names, run directories and exported model folders.
    The first argument that is an existing path and neither a run directory nor an exported
    folder starts the sources (files and folders, as `lba voxelize` takes them).

    Returns:
        (model references, source paths).
    """
    models: list[str] = []
    for position, arg in enumerate(args):
        if not _is_model(arg):
            return models, [Path(a) for a in args[position:]]
        models.append(arg)
    return models, []


def resolve_predictors(store: RunStore, refs: list[str], group: str | None = None) -> list[Predictor]:
    """The fine-tuned models named by references and by a replicate group.

    Args:
        store: the run store.
        refs: run ids, prefixes, names, run directories or exported model folders.
        group: a group of runs: the ``NAME`` of their ``group:NAME`` tag (as ``lba finetune
            --seeds`` tags replicates; see ``lba runs list``) or any tag they share; its
            fine-tuning runs are taken.

    Raises:
        RunNotFoundError: for an unknown reference or a group with no runs.
        ConfigError: for a pre-training run or encoder (it does not predict pK), or no model.
    """
    predictors: list[Predictor] = []
    for ref in refs:
        if is_export_dir(Path(ref)):
            export = read_export(Path(ref))
            predictors.append(Predictor(str(export.path), export.label, export.config, export=export))
        else:
            run = store.resolve(ref, kind=RunKind.finetune.value)
            predictors.append(Predictor(run.id, run.name or run.id, run.config, run=run))
    if group:
        kind = RunKind.finetune.value  # a sweep's group holds its pre-training runs too
        rows = store.index_rows(kind=kind, tags=[f"group:{group}"]) or store.index_rows(kind=kind, tags=[group])
        if not rows:
            raise RunNotFoundError(f"no fine-tuning run carries the tag group:{group} or {group}\n"
                                   "expected: a replicate group (lba runs list shows the tags) or a tag you gave runs")
        for row in rows:
            run = store.resolve(row["id"])
            predictors.append(Predictor(run.id, run.name or run.id, run.config, run=run))
    if not predictors:
        raise ConfigError("no model to predict with\nexpected: fine-tuning runs, exported model folders or "
                          "--group NAME before the sources")
    unique = list({p.name: p for p in predictors}.values())
    wrong = [p.label for p in unique if p.config.get("kind") != RunKind.finetune.value]
    if wrong:
        raise ConfigError(f"{', '.join(wrong)}: pre-training, not an affinity model\n"
                          "expected: fine-tuning runs or exported fine-tuned models (they predict pK)")
    return unique


def _common_grid(predictors: list[Predictor]) -> GridConfig:
    grids = [p.grid for p in predictors]
    for predictor, grid in zip(predictors[1:], grids[1:]):
        if grid != grids[0]:
            differing = [f"{f}: {getattr(grids[0], f)!r} ({predictors[0].label}), {getattr(grid, f)!r} "
                         f"({predictor.label})" for f in grid.__dataclass_fields__
                         if getattr(grid, f) != getattr(grids[0], f)]
            raise ConfigError("the models were trained on different grids; an ensemble needs one:\n  "
                              + "\n  ".join(differing))
    return grids[0]


@dataclass
class PredictionReport:
    """What `predict_complexes` did.

    Attributes:
        frame: one row per complex predicted (`PREDICTIONS_SCHEMA`): the mean pK over the
            models, their sample standard deviation (ddof = 1; null for one model), how many
            models, the measured pK where the source gives one (else null) and where the
            complex was read from.
        per_model: model name -> float64 array (M,) of its predictions, in frame order.
        skipped: every complex not predicted, with stage and reason.
        notes: (id, note) for complexes read in a non-default way.
        messages: what the user should know about the sources.
        series_sdfs: the SDF files of the series among the sources.
    """

    frame: pl.DataFrame
    per_model: dict[str, np.ndarray]
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    series_sdfs: list[Path] = field(default_factory=list)


def predict_complexes(
    predictors: list[Predictor],
    sources: list[Path],
    *,
    fmt: SourceFormat = SourceFormat.auto,
    label_field: str | None = None,
    label_unit: LabelUnit | str = LabelUnit.pk,
    labels: Path | None = None,
    report: Path | None = None,
    num_rotations: int = 0,
    seed: int = 0,
    device: str = "auto",
    batch_size: int = 32,
    on_complex: Callable[[str], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> PredictionReport:
    """Read complexes from the sources and predict their pK with every model.

    Args:
        predictors: the models (`resolve_predictors`); they must share one grid.
        sources: as `lba voxelize` takes them (see `lba_cli.data.build.read_sources`).
        fmt: the sources' layout (detected when ``auto``).
        label_field, label_unit: the measured affinity of an SDF series, when it has one.
        labels: the label table of a folder of ``<id>/`` subfolders (``folders-csv``), when
            it is not the one CSV in the folder.
        report: write every skipped complex to this CSV (`lba_cli.data.build.write_skip_report`),
            also when none could be used.
        num_rotations: test-time augmentation: average over this many random rotations per
            model (0: the complex's own orientation). See `lba_cli.evaluate.predict`.
        seed: seed of those rotations.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        batch_size: complexes per forward pass.
        on_complex: called with each complex id as it is read.
        on_start: called once with the number of complex predictions to make (complexes x
            models x max(1, rotations)), before the first.
        on_batch: called with the number of complex predictions of each batch done.

    Returns:
        A `PredictionReport`.

    Raises:
        DataError: if no complex can be read or placed in its box.
        ConfigError: for models trained on different grids, or a negative ``num_rotations``.
    """
    from lba_cli.data.build import make_grid_set, nothing_usable, place_in_boxes, read_sources, write_skip_report
    from lba_cli.data.dataset import AffinityDataset
    from lba_cli.data.sources import resolve_sources
    from lba_cli.devices import resolve_device
    from lba_cli.evaluate import predict

    if num_rotations < 0:
        raise ConfigError(f"invalid --tta {num_rotations}\nexpected: 0 (no rotation) or a number of rotations")
    if report is not None:
        check_writable(report)
    grid = _common_grid(predictors)
    options = SourceOptions(label_field, label_unit, require_labels=False,
                            labels=Path(labels) if labels is not None else None)
    series = [paths[1] for paths, kind in resolve_sources(sources, fmt, options) if kind is SourceFormat.sdf_series]
    readout = read_sources(sources, grid, fmt=fmt, on_complex=on_complex, options=options, report=report)
    boxed = place_in_boxes(readout.records, grid)
    skipped = readout.skipped + boxed.skipped
    if not boxed.records:
        raise nothing_usable(f"no complex could be used from {', '.join(map(str, sources))}", skipped, report)
    if report is not None:
        write_skip_report(report, skipped)
    data = make_grid_set(boxed, grid)
    dataset = AffinityDataset(Path(str(sources[0])), ALL_COMPLEXES, grid, grid_set=data)
    torch_device = resolve_device(device)
    if on_start is not None:
        on_start(len(dataset) * len(predictors) * max(1, num_rotations))
    per_model = {}
    for predictor in predictors:
        model = predictor.load_model(torch_device)
        per_model[predictor.name] = predict(model, dataset, grid, torch_device, batch_size,
                                            num_rotations=num_rotations, seed=seed, on_batch=on_batch)
        del model
    stacked = np.stack(list(per_model.values()))  # (K models, M complexes)
    spread = np.std(stacked, axis=0, ddof=1) if len(stacked) > 1 else np.full(stacked.shape[1], np.nan)
    measured = [r.affinity_pk for r in boxed.records]  # as read (float64), not the float32 of the file layout
    frame = pl.DataFrame({
        "id": data.ids.tolist(),
        "predicted_pk": stacked.mean(axis=0),
        "std": [None if math.isnan(v) else float(v) for v in spread],
        "n_models": [len(stacked)] * len(data),
        "affinity_pk": measured,
        "source": data.source.tolist(),
    }, schema=PREDICTIONS_SCHEMA)
    return PredictionReport(frame, per_model, skipped, [(r.complex_id, n) for r in boxed.records for n in r.notes],
                            readout.messages, series)


def write_predictions_table(frame: pl.DataFrame, path: Path) -> Path:
    """Write predictions as CSV (``.csv``) or JSON records (``.json``, NaN as null), atomically.

    Raises:
        ConfigError: for another suffix.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise ConfigError(f"cannot write predictions as {path.name}\nexpected: a .csv or .json file (-o "
                          "predictions.csv)")
    with atomic_path(path) as tmp:
        if suffix == ".csv":
            frame.write_csv(tmp)
        else:
            rows = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
                    for row in frame.to_dicts()]
            Path(tmp).write_text(json.dumps(rows, indent=2, allow_nan=False) + "\n")
    return path


def write_series_sdf(sdf_path: Path, frame: pl.DataFrame, skipped: list[Skipped], out_path: Path) -> int:
    """Write a series' SDF again, every record with its prediction as SD properties.

    Each record keeps its coordinates and properties and gains `SDF_PROPERTIES`
    (``lba_predicted_pk``, ``lba_predicted_pk_std``, ``lba_n_models``), or ``lba_skipped`` with the
    reason when it was not predicted, so the file opens with the predictions in any chemistry
    tool. Written with RDKit, atomically.

    Args:
        sdf_path: the series' SDF as given to `predict_complexes`.
        frame: its `PredictionReport.frame` (rows are matched by ``source``, ``<sdf>#<record>``).
        skipped: its `PredictionReport.skipped`.
        out_path: the SDF to write.

    Returns:
        The number of records written (records RDKit cannot read at all are left out).
    """
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    rows = {row["source"]: row for row in frame.iter_rows(named=True)}
    reasons = {item.source: f"{item.stage}: {item.reason}" for item in skipped}
    sanitized = Chem.SDMolSupplier(str(sdf_path), sanitize=True, removeHs=False)
    raw = Chem.SDMolSupplier(str(sdf_path), sanitize=False, removeHs=False)
    written = 0
    with atomic_path(Path(out_path)) as tmp:
        writer = Chem.SDWriter(str(tmp))
        for index in range(len(raw)):
            mol = sanitized[index]
            if mol is None:
                mol = raw[index]
            if mol is None:
                continue
            source = f"{sdf_path}#{index + 1}"
            row = rows.get(source)
            if row is None:
                mol.SetProp(_SKIPPED_PROPERTY, reasons.get(source, "not predicted"))
            else:
                mol.SetDoubleProp(SDF_PROPERTIES["predicted_pk"], row["predicted_pk"])
                if row["std"] is not None:
                    mol.SetDoubleProp(SDF_PROPERTIES["std"], row["std"])
                mol.SetIntProp(SDF_PROPERTIES["n_models"], row["n_models"])
            writer.write(mol)
            written += 1
        writer.close()
    return written
