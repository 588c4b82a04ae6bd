"""`lba compare`: one row per run (or replicate group) with the settings that differ.

Settings are the run's resolved config flattened to dotted names (``train.lr``,
``neighbor.pad_max_A``). A run's *label* names what it is in the research question:
a pre-training run by its task difficulty ``min-max-angle`` (``1-2-20``), a fine-tuning
run by its initialisation (``random``, or the parent's label, plus ``frozen``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from lba_cli.errors import LbaError, RunNotFoundError
from lba_cli.metrics import REGRESSION_METRICS, higher_is_better, mean_std
from lba_cli.runs import INDEX_NAME, Run, RunStore, is_run_dir, looks_like_run_dir

__all__ = ["flatten_config", "run_label", "differing_settings", "collect_runs", "compare_runs", "Comparison",
           "labels_for", "replicate_groups", "ensemble_columns", "METRIC_COLUMNS"]

METRIC_COLUMNS = (*(f"{split}/{m.name}" for split in ("val", "test") for m in REGRESSION_METRICS),
                  "val/accuracy", "val/shortcut_accuracy", "val/slab_shortcut_accuracy", "val/loss")
_NOT_SETTINGS = ("name", "lba_version", "git_sha", "finetune.init", "finetune.data_path", "structures",
                 "exclude_ids", "exclude_similar_to", "train.device", "train.num_workers")


def flatten_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 0.001}}`` -> ``{"train.lr": 0.001}``; lists become strings."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_config(value, f"{name}."))
        elif isinstance(value, list):
            out[name] = " ".join(map(str, value)) if not any(isinstance(v, list) for v in value) else str(value)
        else:
            out[name] = value
    return out


def _neighbor_label(config: dict[str, Any]) -> str:
    task = config.get("neighbor") or {}
    return "-".join(f"{float(task.get(k, 0)):g}" for k in ("pad_min_A", "pad_max_A", "angle_deg"))


def run_label(run: Run, store: RunStore) -> str:
    """``1-2-20`` for pre-training; ``random``, ``1-2-20`` or ``1-2-20 frozen`` for fine-tuning."""
    config = run.config
    if config["kind"] == "pretrain":
        return _neighbor_label(config)
    tune = config.get("finetune") or {}
    if tune.get("init", "random") == "random":
        return "random"
    label = run.status.get("parent_label")
    if not label:
        try:
            label = _neighbor_label(store.resolve(tune["init"]).config)
        except LbaError:
            label = f"pretrained {tune['init']}"
    return f"{label} frozen" if tune.get("freeze") else label


# Settings in which replicates may differ: the seed, and what does not change a run's result.
_NOT_REPLICATE = ("name", "lba_version", "git_sha", "train.seed", "train.device", "train.num_workers")


def replicate_groups(runs: list[Run], store: RunStore) -> list[tuple[str, list[Run]]]:
    """Group runs that differ only in their seed (and name, device, worker count).

    Returns:
        (label, members) per group, in the order of each group's first run (`run_label`).
    """
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        flat = flatten_config(run.config)
        key = repr(sorted((k, repr(v)) for k, v in flat.items() if not k.startswith(_NOT_REPLICATE)))
        groups.setdefault((run_label(run, store), key), []).append(run)
    return [(label, members) for (label, _), members in groups.items()]


def ensemble_columns(members: list[Run], splits: tuple[str, ...] = ("val", "test")) -> dict[str, float | None]:
    """``<split>/<metric> ens``: each metric of the members' mean prediction (`lba_cli.ensembles`).

    Null for a split where a member has no saved predictions, and for a group of one run.
    """
    from lba_cli.ensembles import summarise_replicates
    from lba_cli.errors import StoreError

    out: dict[str, float | None] = {}
    for split in splits:
        names = [f"{split}/{m.name} ens" for m in REGRESSION_METRICS]
        try:
            summary = summarise_replicates([r.read_predictions(split) for r in members]) if len(members) > 1 else None
        except StoreError:
            summary = None
        out.update({name: summary.ensemble[m.name] if summary else None
                    for name, m in zip(names, REGRESSION_METRICS)})
    return out


def differing_settings(configs: list[dict[str, Any]]) -> list[str]:
    """Dotted names of the settings whose values are not the same in every config."""
    flat = [flatten_config(c) for c in configs]
    keys = sorted({k for f in flat for k in f})
    return [k for k in keys if not k.startswith(_NOT_SETTINGS) and len({repr(f.get(k)) for f in flat}) > 1]


def collect_runs(store: RunStore, refs: list[str]) -> tuple[list[Run], list[tuple[str, str]]]:
    """Resolve references, as a shell glob such as ``runs/*`` gives them.

    Entries of a runs directory that are not runs (``index.sqlite`` and its companions) are
    left out silently: ``runs/*`` lists them, and nobody means them. Any other path that
    exists but is not a run, and every damaged run (a config.json or status.json that cannot
    be read), is left out and reported with the reason.

    Returns:
        (runs without duplicates, in the order given; [(ref, reason)] for reported entries).

    Raises:
        RunNotFoundError: for a reference that is neither a run nor an existing path.
    """
    runs: list[Run] = []
    skipped: list[tuple[str, str]] = []
    seen = set()
    for ref in refs:
        path = Path(ref)
        if path.exists() and not is_run_dir(path):
            if looks_like_run_dir(path):
                skipped.append((ref, f"damaged run: {Run(path.name, path, store).problem()}"))
            elif not (path.resolve().parent / INDEX_NAME).exists():
                skipped.append((ref, "not a run directory"))
            continue
        run = store.resolve(ref)
        problem = run.problem()
        if problem is not None:
            skipped.append((ref, f"damaged run {run.id}: {problem}"))
            continue
        if run.path.resolve() not in seen:
            seen.add(run.path.resolve())
            runs.append(run)
    return runs, skipped


@dataclass
class Comparison:
    """Result of `compare_runs`.

    Attributes:
        tables: per run kind (``pretrain``, ``finetune``), one row per run or group: run,
            name, kind, label, the settings that differ among runs of that kind, status,
            best_epoch, then metrics (``val/rmse``, ...; ``"mean ± std"`` strings for groups).
        skipped: (ref, reason) for entries that were not runs.
    """

    tables: dict[str, pl.DataFrame]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def table(self) -> pl.DataFrame:
        """All kinds in one frame (columns united; missing values null)."""
        return pl.concat(list(self.tables.values()), how="diagonal_relaxed")


def compare_runs(store: RunStore, refs: list[str], *, sort: str | None = None, show_all: bool = False,
                 group_replicates: bool = False) -> Comparison:
    """Build the comparison tables of the referenced runs, one per run kind.

    Args:
        store: the run store (for references and parents).
        refs: ids, prefixes, names or run directories (a shell glob's output is fine).
        sort: a metric or setting column to sort by: best first for a metric
            (`lba_cli.metrics.higher_is_better`), ascending for a setting.
        show_all: show every setting, not only those that differ.
        group_replicates: one row per group of runs that differ only in ``train.seed``,
            metrics as ``<metric> mean`` and ``<metric> std`` columns (sample std, ddof = 1;
            null for a group of one run), and for fine-tuning, ``<split>/<metric> ens``: the
            metrics of the group's mean prediction (`ensemble_columns`).

    Raises:
        RunNotFoundError: for an unknown reference; LbaError for an unknown sort column.
    """
    runs, skipped = collect_runs(store, refs)
    if not runs:
        listed = "".join(f"\n  {ref}: {reason}" for ref, reason in skipped)
        raise RunNotFoundError("no runs to compare" + (f"; left out:{listed}" if skipped else ""))
    by_kind: dict[str, list[Run]] = {}
    for run in runs:
        by_kind.setdefault(run.kind, []).append(run)
    tables = {kind: _kind_table(store, members, sort, show_all, group_replicates) for kind, members in by_kind.items()}
    if sort is not None and not any(sort in t.columns for t in tables.values()):
        columns = sorted({c for t in tables.values() for c in t.columns})
        raise LbaError(f"cannot sort by {sort!r}\nexpected one of: {', '.join(columns)}")
    return Comparison(tables, skipped)


def _kind_table(store: RunStore, runs: list[Run], sort: str | None, show_all: bool, group: bool) -> pl.DataFrame:
    configs = [r.config for r in runs]
    settings = sorted(flatten_config(configs[0])) if show_all else differing_settings(configs)
    settings = [s for s in settings if not s.startswith(_NOT_SETTINGS) and s != "kind"]
    rows = []
    for run, config in zip(runs, configs):
        flat = flatten_config(config)
        status = run.status
        metrics = status.get("metrics", {})
        row: dict[str, Any] = {"run": run.id, "name": run.name or "", "kind": config["kind"],
                               "label": run_label(run, store)}
        row.update({s: _cell(flat.get(s)) for s in settings})
        row.update({"status": status["status"], "best_epoch": status.get("best_epoch")})
        row.update({m: metrics.get(m) for m in METRIC_COLUMNS})
        rows.append(row)
    present = [m for m in METRIC_COLUMNS if any(r[m] is not None for r in rows)]
    for r in rows:
        for m in METRIC_COLUMNS:
            if m not in present:
                del r[m]
    table = pl.DataFrame(rows, infer_schema_length=None)
    if group:
        table = _group(table, [s for s in settings if s != "train.seed"] + ["kind", "label"], present,
                       {run.id: run for run in runs})
    if sort is not None and sort in table.columns:
        descending = bool(higher_is_better(sort))  # best first; settings ascending
        table = table.sort(sort, descending=descending, nulls_last=True)
    return table


def _cell(value: Any) -> Any:
    return value if value is None or isinstance(value, (int, float, str, bool)) else str(value)


def _group(table: pl.DataFrame, keys: list[str], metrics: list[str], runs: dict[str, Run]) -> pl.DataFrame:
    keys = [k for k in keys if k in table.columns]
    out = []
    for _, group in table.group_by(keys, maintain_order=True):
        row = {k: group[k][0] for k in keys}
        row["runs"] = group.height
        seeds = sorted(group["train.seed"].to_list()) if "train.seed" in group.columns else []
        row["seeds"] = " ".join(map(str, seeds))
        for m in metrics:
            values = [v for v in group[m].to_list() if v is not None and not (isinstance(v, float) and math.isnan(v))]
            mean, std = mean_std(values) if values else (None, None)
            row[f"{m} mean"], row[f"{m} std"] = mean, std if len(values) > 1 else None  # no spread of one run
        if row.get("kind") == "finetune":
            row.update(ensemble_columns([runs[r] for r in group["run"].to_list()]))
        out.append(row)
    return pl.DataFrame(out, infer_schema_length=None)


def labels_for(runs: list[Run], store: RunStore, color_by: str | None = None) -> tuple[list[str], str]:
    """Legend labels for runs, and the legend title.

    With ``color_by`` (a dotted setting such as ``train.lr``) the label is that setting's
    value. Otherwise it is `run_label`; runs that would share a label are told apart by
    their kind, then by the settings that differ among them (e.g. replicates:
    ``random seed=1``), then by the end of their id.

    Raises:
        LbaError: if ``color_by`` names no setting of these runs.
    """
    configs = [flatten_config(r.config) for r in runs]
    if color_by:
        if not any(color_by in c for c in configs):
            raise LbaError(f"--color-by {color_by!r} is not a setting of these runs\n"
                           f"expected one of: {', '.join(sorted(configs[0]))}")
        return [str(c.get(color_by)) for c in configs], color_by
    labels = [run_label(r, store) for r in runs]
    for refine in (_by_kind, _by_settings, _by_id):
        clashing: dict[str, list[int]] = {}
        for index, label in enumerate(labels):
            clashing.setdefault(label, []).append(index)
        for members in clashing.values():
            if len(members) > 1:
                for index, extra in zip(members, refine([runs[i] for i in members])):
                    labels[index] = f"{labels[index]} {extra}".strip()
    return labels, "run (pre-training: min-max-angle)"


def _by_kind(runs: list[Run]) -> list[str]:
    kinds = [r.kind for r in runs]
    return kinds if len(set(kinds)) > 1 else [""] * len(runs)


def _by_settings(runs: list[Run]) -> list[str]:
    settings = [s for s in differing_settings([r.config for r in runs]) if s != "kind"][:3]
    flat = [flatten_config(r.config) for r in runs]
    return [" ".join(f"{s.split('.')[-1]}={f.get(s)}" for s in settings) for f in flat]


def _by_id(runs: list[Run]) -> list[str]:
    names = [r.name for r in runs]
    if all(names) and len(set(names)) == len(names):
        return [f"({name})" for name in names]
    return [r.id[-4:] for r in runs]
