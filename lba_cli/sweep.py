"""`lba sweep`: the experiment behind the research question.

For every pre-training difficulty (a padding range x a maximum angle) it pre-trains one
encoder, then fine-tunes from it under every seed, twice: the whole network, and the head
alone on the frozen encoder. Random-initialisation controls run under the same seeds,
epochs and model selection. The result is one comparison table and one figure of validation
and test metrics per difficulty. The table gives, per label, the per-run mean ± sample std
(ddof 1) over seeds and the metrics of the seed ensemble (the mean prediction,
`lba_cli.ensembles`), and ends with the two baselines of `lba_cli.baselines` on the same
complexes.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from lba_cli.atomic import write_text_atomic
from lba_cli.config import RunConfig
from lba_cli.errors import ConfigError
from lba_cli.metrics import mean_std
from lba_cli.runs import Run, RunStore, new_group_id
from lba_cli.train import NullReporter, Reporter

__all__ = ["SweepPlan", "SweepResult", "plan_settings", "run_sweep", "summarise_sweep", "SWEEP_METRICS",
           "PRETRAIN_METRICS"]

SWEEP_METRICS = ("val/rmse", "val/pearson", "test/rmse", "test/pearson")
# The pre-training run behind a label: its pretext accuracy beside the rules with no learning.
PRETRAIN_METRICS = ("val/accuracy", "val/shortcut_accuracy", "val/slab_shortcut_accuracy")


@dataclass(frozen=True)
class SweepPlan:
    """What to run.

    Attributes:
        pretrain: template pre-training config (its neighbor pad/angle are replaced).
        finetune: template fine-tuning config (its init, freeze and seed are replaced).
        settings: (pad_min_A, pad_max_A, angle_deg) per difficulty.
        seeds: fine-tuning seeds; pre-training uses the first.
        output_dir: where the table, figure and manifest go.
    """

    pretrain: RunConfig
    finetune: RunConfig
    settings: tuple[tuple[float, float, float], ...]
    seeds: tuple[int, ...]
    output_dir: Path

    def __post_init__(self) -> None:
        if not self.settings or not self.seeds:
            raise ConfigError("a sweep needs at least one --pad and --angle and one seed")


@dataclass
class SweepResult:
    """Runs and outputs of a sweep.

    Attributes:
        group: the ``group:<id>`` tag every run carries.
        runs: (label, seed, run) for every fine-tuning run.
        pretrains: (label, run) for every pre-training run.
        table: mean ± std per label (`summarise_sweep`).
        table_path, figure_path, manifest_path: files written.
    """

    group: str
    runs: list[tuple[str, int, Run]] = field(default_factory=list)
    pretrains: list[tuple[str, Run]] = field(default_factory=list)
    table: pl.DataFrame | None = None
    table_path: Path | None = None
    figure_path: Path | None = None
    manifest_path: Path | None = None


def plan_settings(pads: list[tuple[float, float]], angles: list[float]) -> tuple[tuple[float, float, float], ...]:
    """Every padding range with every angle, in the order given."""
    return tuple((lo, hi, angle) for (lo, hi), angle in itertools.product(pads, angles))


def run_sweep(plan: SweepPlan, store: RunStore, reporter: Reporter | None = None) -> SweepResult:
    """Run the whole sweep sequentially and write its table and figure.

    Raises:
        ConfigError, DataError: on bad settings or inputs (before any training where possible).
    """
    from lba_cli.finetune import finetune
    from lba_cli.pretrain import pretrain

    reporter = reporter or NullReporter()
    group = new_group_id()
    result = SweepResult(group=group)
    tag = [f"group:{group}"]
    plan.output_dir.mkdir(parents=True, exist_ok=True)

    def tune(label: str, seed: int, init: str, freeze: bool) -> None:
        config = dataclasses.replace(
            plan.finetune, name=f"sweep-{label.replace(' ', '-')}-s{seed}",
            train=dataclasses.replace(plan.finetune.train, seed=seed),
            finetune=dataclasses.replace(plan.finetune.finetune, init=init, freeze=freeze))
        reporter.message(f"sweep: fine-tune {label}, seed {seed}")
        run = finetune(config, store, reporter)
        store.tag(run, add=tag)
        result.runs.append((label, seed, run))
        _write_manifest(plan, result)

    for seed in plan.seeds:
        tune("random", seed, "random", False)
    for pad_min, pad_max, angle in plan.settings:
        task = dataclasses.replace(plan.pretrain.neighbor, pad_min_A=pad_min, pad_max_A=pad_max, angle_deg=angle)
        label = task.label
        config = dataclasses.replace(plan.pretrain, neighbor=task, name=f"sweep-pretrain-{label}",
                                     train=dataclasses.replace(plan.pretrain.train, seed=plan.seeds[0]))
        reporter.message(f"sweep: pre-train {label}")
        pre = pretrain(config, store, reporter)
        store.tag(pre, add=tag)
        result.pretrains.append((label, pre))
        for seed in plan.seeds:
            tune(label, seed, pre.id, False)
            tune(f"{label} frozen", seed, pre.id, True)

    result.table = summarise_sweep(result.runs, result.pretrains, Path(plan.finetune.finetune.data_path))
    result.table_path = plan.output_dir / "sweep.csv"
    write_text_atomic(result.table_path, result.table.write_csv())
    write_text_atomic(plan.output_dir / "sweep.md", _markdown(result.table))
    from lba_cli.plots import plot_sweep, save_plot

    figure = plot_sweep(sweep_frame(result.runs, result.pretrains))
    result.figure_path = save_plot(figure, plan.output_dir / "sweep.png", 9.0, 8.0)
    result.manifest_path = _write_manifest(plan, result)
    return result


def sweep_frame(runs: list[tuple[str, int, Run]], pretrains: list[tuple[str, Run]] = ()) -> pl.DataFrame:
    """Long frame: label, seed, split (val/test), metric (rmse/pearson/...), value.

    Pre-training runs add their validation ``accuracy`` (pretext) and ``shortcut_accuracy``
    and ``slab_shortcut_accuracy`` (the rules with no learning on the same pairs) under their label.
    """
    rows = []
    for label, run in pretrains:
        metrics = run.status.get("metrics", {})
        for name in PRETRAIN_METRICS:
            rows.append({"label": label, "seed": int(run.config["train"]["seed"]), "split": "val",
                         "metric": name.split("/")[1], "value": metrics.get(name)})
    for label, seed, run in runs:
        metrics = run.status.get("metrics", {})
        for name in SWEEP_METRICS:
            split, metric = name.split("/")
            rows.append({"label": label, "seed": seed, "split": split, "metric": metric,
                         "value": metrics.get(name)})
    return pl.DataFrame(rows, schema={"label": pl.Utf8, "seed": pl.Int64, "split": pl.Utf8, "metric": pl.Utf8,
                                      "value": pl.Float64})


def summarise_sweep(runs: list[tuple[str, int, Run]], pretrains: list[tuple[str, Run]] = (),
                    data_path: Path | None = None) -> pl.DataFrame:
    """One row per label, then one per baseline.

    Columns: label, runs, seeds; for each of `SWEEP_METRICS`, ``<m> mean`` and ``<m> std``
    (per-run mean and sample std, ddof 1, over seeds; null for one seed) and ``<m> ens`` (the metric of the seed
    ensemble's mean prediction, `lba_cli.compare.ensemble_columns`; null for one run or where
    predictions are missing); and the label's pre-training `PRETRAIN_METRICS` (``pretrain
    val/accuracy``, ...; null for ``random``). With ``data_path`` (the fine-tuning file), the
    baselines of `lba_cli.baselines` follow as rows ``baseline: <name>`` on the same val and
    test complexes, with runs 0 and no std or ensemble.
    """
    from lba_cli.compare import ensemble_columns

    frame = sweep_frame(runs)
    pretrain_metrics = {label: run.status.get("metrics", {}) for label, run in pretrains}
    rows = []
    for label in dict.fromkeys(r[0] for r in runs):
        part = frame.filter(pl.col("label") == label)
        row = {"label": label, "runs": part["seed"].n_unique(),
               "seeds": " ".join(map(str, sorted(part["seed"].unique().to_list())))}
        for name in SWEEP_METRICS:
            split, metric = name.split("/")
            chosen = part.filter((pl.col("split") == split) & (pl.col("metric") == metric))
            values = [v for v in chosen["value"].to_list()
                      if v is not None and v == v]
            mean, std = mean_std(values) if values else (float("nan"), float("nan"))
            row[f"{name} mean"], row[f"{name} std"] = mean, std if len(values) > 1 else None  # no spread of one
        ensemble = ensemble_columns([run for name, _, run in runs if name == label])
        row.update({f"{name} ens": ensemble.get(f"{name} ens") for name in SWEEP_METRICS})
        parent = pretrain_metrics.get(label.removesuffix(" frozen"), {})
        for name in PRETRAIN_METRICS:
            row[f"pretrain {name}"] = parent.get(name)
        rows.append(row)
    if data_path is not None:
        rows.extend(_baseline_rows(data_path))
    return pl.DataFrame(rows, infer_schema_length=None)


def _baseline_rows(data_path: Path) -> list[dict]:
    from lba_cli.evaluate import evaluate_baselines

    by_split = {split: evaluate_baselines(data_path, split) for split in ("val", "test")}
    rows = []
    for index, first in enumerate(by_split["val"]):
        row: dict = {"label": first.run_id, "runs": 0, "seeds": ""}
        for name in SWEEP_METRICS:
            split, metric = name.split("/")
            value = by_split[split][index].metrics[metric]
            row.update({f"{name} mean": value, f"{name} std": None, f"{name} ens": None})
        rows.append(row)
    return rows


def _cell(row: dict, name: str) -> str:
    mean, std = row[f"{name} mean"], row[f"{name} std"]
    if mean is None:
        return ""
    return f"{mean:.3f}" if std is None else f"{mean:.3f} ± {std:.3f}"


def _markdown(table: pl.DataFrame) -> str:
    header = ("| label | runs | " + " | ".join(f"{m} | {m} ens" for m in SWEEP_METRICS)
              + " | pretext val/accuracy | val/shortcut_accuracy | val/slab_shortcut_accuracy |")
    lines = [header, "|" + "---|" * (5 + 2 * len(SWEEP_METRICS))]
    for row in table.iter_rows(named=True):
        cells = [f"{_cell(row, m)} | {'' if row.get(f'{m} ens') is None else format(row[f'{m} ens'], '.3f')}"
                 for m in SWEEP_METRICS]
        cells += ["" if row.get(f"pretrain {m}") is None else f"{row[f'pretrain {m}']:.3f}" for m in PRETRAIN_METRICS]
        lines.append(f"| {row['label']} | {row['runs']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _write_manifest(plan: SweepPlan, result: SweepResult) -> Path:
    path = plan.output_dir / "sweep.json"
    manifest = {"group": result.group, "settings": [list(s) for s in plan.settings], "seeds": list(plan.seeds),
                "runs": [{"label": label, "seed": seed, "run": run.id} for label, seed, run in result.runs]}
    write_text_atomic(path, json.dumps(manifest, indent=2))
    return path
