"""The model card (README.md) of an exported model, made from its ``export.json`` and config.

A model card says what a model is, what it was trained on, how well it did against trivial
baselines on the same complexes, and with which software (Mitchell et al., "Model Cards for
Model Reporting", FAT* 2019). Pure text: no file I/O, no torch.
"""

from __future__ import annotations

import math
from typing import Any

from lba_cli.metrics import REGRESSION_METRICS

__all__ = ["make_model_card"]


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "undefined"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _metric_cell(value: list[Any]) -> str:
    """``1.234 [1.10, 1.38]`` from ``[value, lo, hi]``."""
    point, lo, hi = (list(value) + [None, None])[:3]
    if point is None or (isinstance(point, float) and not math.isfinite(point)):
        return "undefined"
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return _num(point)
    return f"{point:.3f} [{lo:.2f}, {hi:.2f}]"


def _architecture(manifest: dict[str, Any], config: dict[str, Any]) -> str:
    model, grid = config["model"], config["grid"]
    channels = grid["channels"]
    names = [",".join(group) for group in channels] + (["protein"] if grid.get("protein_channel") else [])
    rows = [["architecture", f"`{model['arch']}`"],
            ["stem and stage widths", " ".join(map(str, model.get("widths") or []))],
            ["blocks per stage", _num(model.get("blocks"))],
            ["bottleneck divisor", _num(model.get("bottleneck_divisor"))],
            ["regression head", f"Linear(F, {model.get('head_hidden')}) → ReLU → Dropout({model.get('dropout')}) → "
                                "Linear(1)"],
            ["trainable parameters", f"{manifest['parameters']:,}"],
            ["input", f"{len(names)} channels ({', '.join(names)}), {grid['box_size_voxels']}³ voxels of "
                      f"{grid['resolution_A']} Å ({grid['box_size_voxels'] * grid['resolution_A']:g} Å box centred on "
                      f"the ligand), atoms as hard spheres of {grid['radius_A']} Å"],
            ["hydrogens, waters", f"{'kept' if grid.get('keep_hydrogens') else 'removed'}, "
                                  f"{'kept' if grid.get('keep_water') else 'removed'}"]]
    return _table(["", ""], rows)


def _parent(manifest: dict[str, Any]) -> str:
    parent = manifest.get("parent")
    if parent is None:
        return "None: the encoder started from random weights."
    lines = [f"Encoder initialised from pre-training run `{parent.get('id') or parent.get('init')}`"
             + (f" ({parent['name']})" if parent.get("name") else "")
             + (f", labelled {parent['label']}" if parent.get("label") else "") + "."]
    if parent.get("note"):
        lines.append(f"({parent['note']}: its settings are not known here.)")
    task = parent.get("neighbor") or {}
    if task:
        train = parent.get("train") or {}
        rows = [["neighbour padding", f"{task.get('pad_min_A')}–{task.get('pad_max_A')} Å"],
                ["maximum turn of the neighbour view", f"{task.get('angle_deg')}°"],
                ["view pairs per epoch / validation", f"{task.get('epoch_size')} / {task.get('val_size')}"],
                ["minimum density", f"{task.get('min_density_per_nm3')} atoms/nm³"],
                ["epochs, batch size, learning rate",
                 f"{train.get('num_epochs')}, {train.get('batch_size')}, {train.get('lr')}"],
                ["structure sources", _num(parent.get("num_structure_sources"))],
                ["best epoch", _num(parent.get("best_epoch"))]]
        rows += [[k, _num(v)] for k, v in sorted((parent.get("metrics") or {}).items())]
        lines.append("")
        lines.append(_table(["pre-training setting", "value"], rows))
    return "\n".join(lines)


def _data(manifest: dict[str, Any], config: dict[str, Any]) -> str:
    data = manifest.get("training_data") or {}
    train = config.get("train") or {}
    tune = config.get("finetune") or {}
    sizes = data.get("split_sizes")
    rows = [["file", f"`{data.get('path')}`"],
            ["SHA-256", f"`{data['sha256']}`" if data.get("sha256") else "unknown (the file was not found at export)"],
            ["split sizes (train / val / test)",
             " / ".join(str(sizes.get(s, 0)) for s in ("train", "val", "test")) if sizes else "unknown"],
            ["epochs (best / done / asked)",
             f"{_num(manifest['run'].get('best_epoch'))} / {_num(manifest['run'].get('epochs_done'))} / "
             f"{train.get('num_epochs')}"],
            ["batch size, learning rate, weight decay",
             f"{train.get('batch_size')}, {train.get('lr')}, {train.get('weight_decay')}"],
            ["seed", _num(train.get("seed"))],
            ["encoder", "frozen" if tune.get("freeze") else (f"frozen for {tune['unfreeze_after']} epochs"
                                                           if tune.get("unfreeze_after") else "trained")],
            ["random rotation of each training example per epoch", "yes" if tune.get("rotate", True) else "no"]]
    scaling = manifest.get("target_scaling") or {}
    rows.append(["target scaling", f"mean {scaling.get('mean_pk')}, std {scaling.get('std_pk')} pK; applied by "
                                   f"{scaling.get('applied_by')}"])
    return _table(["", ""], rows)


def _metrics(manifest: dict[str, Any]) -> str:
    metrics = manifest.get("metrics") or {}
    if not metrics:
        return "No evaluation was saved with the run."
    header = ["split", "predictor", "n", *(f"{m.label} [95 % CI]" for m in REGRESSION_METRICS)]
    rows = []
    for split, predictors in metrics.items():
        for name, values in predictors.items():
            rows.append([split, "**this model**" if name == "model" else name, values.get("n"),
                         *(_metric_cell(values.get(m.name, [None])) for m in REGRESSION_METRICS)])
    return _table(header, rows) + (
        "\n\nIntervals: percentile bootstrap over complexes (1000 resamples). Baselines are fitted on the same "
        "training split and scored on the same complexes: `train mean` predicts the mean training pK, `heavy atoms` "
        "a line in the ligand's heavy-atom count. Correlations on fewer than 3 complexes are undefined.")


def make_model_card(manifest: dict[str, Any], config: dict[str, Any]) -> str:
    """The model card of an exported model, as Markdown.

    Args:
        manifest: the export's ``export.json`` content (see `lba_cli.export.export_run`).
        config: the exported run's resolved config.
    """
    run = manifest["run"]
    title = run.get("name") or run["id"]
    parts = [f"# {title}: lba {'binding-affinity model' if run['kind'] == 'finetune' else 'pre-trained encoder'}",
             "",
             f"Exported by lba {manifest['lba_version']} on {manifest['exported_at']} from run `{run['id']}` "
             f"(label {run.get('label')}, status {run.get('status')}), checkpoint `{run.get('checkpoint')}` "
             f"(after epoch {run.get('checkpoint_epoch')}). The run was trained with lba {run.get('lba_version')}"
             + (f", git commit `{run['git_sha']}`" if run.get("git_sha") else "") + "."]
    if run["kind"] == "finetune":
        parts += ["",
                  "Predicts the binding affinity pK = −log10(Kd or Ki / 1 M) of a protein–ligand complex from a voxel "
                  "grid of the box around the ligand (whole protein plus ligand, no rotation at prediction unless "
                  "asked for).",
                  "",
                  "## Use",
                  "",
                  "    lba predict THIS_FOLDER PROTEIN.pdb LIGANDS.sdf --format sdf-series -o predictions.csv",
                  "    lba predict THIS_FOLDER manifest.csv -o predictions.csv --tta 8",
                  "    lba finetune DATA.h5 --init THIS_FOLDER       # continue training on other data"]
    else:
        parts += ["", "An encoder pre-trained on the neighbor-location task, to start fine-tuning from:", "",
                  "    lba finetune DATA.h5 --init THIS_FOLDER"]
    parts += ["", "## Files", "",
              _table(["file", "what"], [["`model.safetensors`", "weights (safetensors: no code runs on loading)"],
                                        ["`config.json`", "the run's resolved settings"],
                                        ["`target_scaling.json`", "how the raw output maps to pK (affinity models)"],
                                        ["`export.json`", "this card, machine-readable"]]),
              "", "## Architecture", "", _architecture(manifest, config)]
    if run["kind"] == "finetune":
        parts += ["", "## Pre-training", "", _parent(manifest),
                  "", "## Training data", "", _data(manifest, config),
                  "", "## Metrics", "", _metrics(manifest)]
    else:
        task = config.get("neighbor") or {}
        parts += ["", "## Pre-training task", "",
                  _table(["", ""], [["padding", f"{task.get('pad_min_A')}–{task.get('pad_max_A')} Å"],
                                    ["maximum turn", f"{task.get('angle_deg')}°"],
                                    ["pair head", f"`{(config.get('model') or {}).get('pair_head', 'pooled')}`"],
                                    ["structure sources", str(len(manifest.get("structures") or []))],
                                    *([k, _num(v)] for k, v in sorted((manifest.get("metrics") or {}).items()))])]
    parts += ["", "## Software", "",
              _table(["package", "version"], [[k, v] for k, v in manifest["packages"].items()]),
              "", "## Reproducibility", "",
              "The same weights give the same predictions on the same device. On another CPU or library build, "
              "and on CUDA, predictions differ at float32 rounding (floating-point sums in another order; on CUDA, "
              "cuDNN picks its convolution algorithms). Retraining with the same seed reproduces the metrics bit "
              "for bit only on the same machine and software, on the CPU; elsewhere expect a different run within "
              "the spread over seeds.", ""]
    return "\n".join(parts)
