"""`lba export`: a trained run as a self-contained model folder that others can use.

Layout of an exported model folder (format ``lba-model``, version 1):

    model.safetensors     the best checkpoint's weights (state_dict; no optimizer, no pickle)
    config.json           the run's resolved config (architecture, grid, training settings)
    target_scaling.json   how the model's raw output maps to pK (mean_pk, std_pk)
    export.json           what the model card says, machine-readable (run, data hash, split
                          sizes, metrics with intervals, baselines, parent, package versions)
    README.md             the model card

The folder is written whole or not at all (a temporary folder, renamed when complete) and
never changed afterwards. `read_export` reads it back; `lba predict DIR` and
``lba finetune --init DIR`` take it where they take a run.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from lba_cli.choices import SPLITS, RunKind
from lba_cli.errors import DataError, LbaError, StoreError
from lba_cli.model_card import make_model_card
from lba_cli.runs import Run, RunStore
from lba_cli.runs.store import read_run_json

__all__ = ["ExportedModel", "ExportResult", "export_run", "read_export", "is_export_dir", "file_sha256",
           "package_versions", "check_run_data", "EXPORT_FORMAT", "EXPORT_FORMAT_VERSION", "WEIGHTS_NAME"]

EXPORT_FORMAT = "lba-model"
EXPORT_FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
SCALING_NAME = "target_scaling.json"
MANIFEST_NAME = "export.json"
CARD_NAME = "README.md"
_PACKAGES = ("lba", "torch", "numpy", "scipy", "polars", "h5py", "gemmi", "rdkit", "safetensors")
# State-dict entries that fine-tuning with standardised targets adds to the affinity model:
# the model itself turns its standardised output z into pK = z * std + mean.
_SCALE_KEYS = ("target_mean_pk", "target_std_pk")


@dataclass
class ExportedModel:
    """An exported model folder, read back.

    Attributes:
        path: the folder.
        config: the run's resolved config (``config.json``).
        manifest: ``export.json``.
    """

    path: Path
    config: dict[str, Any]
    manifest: dict[str, Any]

    @property
    def kind(self) -> str:
        """``finetune`` (predicts pK) or ``pretrain`` (an encoder to fine-tune)."""
        return self.config["kind"]

    @property
    def label(self) -> str:
        """How tables name the model: the exported run's label and the folder's name."""
        return f"{self.manifest.get('run', {}).get('label', self.kind)} ({self.path.name})"

    def read_weights(self, device: Any = "cpu") -> dict[str, Any]:
        """The state_dict, as tensors on ``device``."""
        from lba_cli.checkpoints import load_weights

        return load_weights(self.path / WEIGHTS_NAME, map_location=device)[0]


@dataclass
class ExportResult:
    """What `export_run` wrote.

    Attributes:
        path: the exported folder.
        manifest: the content of its ``export.json``.
    """

    path: Path
    manifest: dict[str, Any]


def is_export_dir(path: Path) -> bool:
    """True for a folder written by `lba export` (``export.json`` and ``model.safetensors``)."""
    path = Path(path)
    return (path / MANIFEST_NAME).is_file() and (path / WEIGHTS_NAME).is_file()


def read_export(path: Path) -> ExportedModel:
    """Read an exported model folder's config and manifest (the weights on demand).

    Raises:
        DataError: if the folder is not an `lba export` folder or is of a newer format.
        StoreError: naming its ``export.json`` or ``config.json`` when that is missing, empty
            or not a JSON object.
    """
    path = Path(path)
    if not is_export_dir(path):
        raise DataError(f"{path} is not an exported lba model\nexpected: a folder written by `lba export RUN DIR` "
                        f"({WEIGHTS_NAME}, {CONFIG_NAME}, {MANIFEST_NAME})")
    manifest = read_run_json(path / MANIFEST_NAME)  # one line naming the file: missing, empty, not JSON
    config = read_run_json(path / CONFIG_NAME)
    if manifest.get("format") != EXPORT_FORMAT or int(manifest.get("format_version", 0)) > EXPORT_FORMAT_VERSION:
        raise DataError(f"{path / MANIFEST_NAME}: format {manifest.get('format')!r} version "
                        f"{manifest.get('format_version')!r}\nexpected: {EXPORT_FORMAT} up to version "
                        f"{EXPORT_FORMAT_VERSION} (a newer lba wrote it?)")
    return ExportedModel(path, config, manifest)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, hex."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def package_versions() -> dict[str, str]:
    """Versions of Python, lba and the libraries a model's numbers depend on; CUDA when torch has it."""
    import torch

    versions = {"python": sys.version.split()[0]}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    versions["cuda"] = torch.version.cuda or "none (CPU build)"
    return versions


def check_run_data(run: Run) -> None:
    """The call site of the run's data-file hash check (refuse on a mismatch; ``--force`` warns).

    The check and the hash it compares with are recorded by the run's provenance, which is not
    part of this module; until that lands, nothing is compared here, and `export_run` reports
    the hash of the file as it is now.
    """


def _target_scaling(state: dict[str, Any]) -> dict[str, Any]:
    if all(key in state for key in _SCALE_KEYS):
        mean, std = (float(state[key]) for key in _SCALE_KEYS)
        return {"mean_pk": mean, "std_pk": std, "applied_by": "the model (pK = z * std_pk + mean_pk)"}
    return {"mean_pk": 0.0, "std_pk": 1.0, "applied_by": "nobody: the model regresses pK directly"}


def _training_data(run: Run, config: dict[str, Any]) -> dict[str, Any]:
    """The fine-tuning data file: path, SHA-256 and split sizes (None where the file is gone)."""
    from lba_cli.data.grids_h5 import read_grid_set

    path = Path(config["finetune"]["data_path"])
    info: dict[str, Any] = {"path": str(path), "sha256": None, "size_bytes": None, "split_sizes": None}
    if not path.is_file():
        return info
    check_run_data(run)
    info.update(sha256=file_sha256(path), size_bytes=path.stat().st_size)
    try:
        data = read_grid_set(path)
    except LbaError:
        return info
    info["split_sizes"] = {split: int((data.split == split).sum()) for split in SPLITS}
    return info


def _metrics(run: Run, data_path: Path | None) -> dict[str, Any]:
    """Per split: the run's metrics with bootstrap intervals (from its saved predictions) and
    the baselines' on the same complexes."""
    from lba_cli.evaluate import evaluate_baselines
    from lba_cli.metrics import bootstrap_intervals, regression_metrics

    out: dict[str, Any] = {}
    for split in ("val", "test"):
        try:
            frame = run.read_predictions(split)
        except StoreError:
            continue
        measured, predicted = frame["affinity_pk"].to_numpy(), frame["predicted_pk"].to_numpy()
        values, intervals = regression_metrics(measured, predicted), bootstrap_intervals(measured, predicted)
        rows = {"model": {"n": frame.height, **{k: [v, *intervals[k]] for k, v in values.items()}}}
        if data_path is not None and data_path.is_file():
            for baseline in evaluate_baselines(data_path, split):
                rows[baseline.run_id] = {"n": int(baseline.metrics["n"]),
                                         **{k: [baseline.metrics[k], *baseline.intervals[k]] for k in intervals}}
        out[split] = rows
    return out


def _parent(run: Run, store: RunStore) -> dict[str, Any] | None:
    """The pre-training run a fine-tuning run started from, with its task settings."""
    parent_id = run.status.get("parent_id")
    if not parent_id:
        init = (run.config.get("finetune") or {}).get("init", "random")
        return None if init == "random" else {"id": None, "init": init, "label": run.status.get("parent_label")}
    info: dict[str, Any] = {"id": parent_id, "label": run.status.get("parent_label")}
    try:
        parent = store.resolve(parent_id)
    except LbaError:
        info["note"] = "the parent run is no longer in the runs directory"
        return info
    config = parent.config
    info.update(name=parent.name, neighbor=config.get("neighbor"), train=config.get("train"),
                model=config.get("model"), num_structure_sources=len(config.get("structures") or ()),
                metrics={k: v for k, v in parent.status.get("metrics", {}).items() if k.startswith("val/")},
                best_epoch=parent.status.get("best_epoch"))
    return info


def _count_parameters(config: dict[str, Any], state: dict[str, Any]) -> int:
    from lba_cli.config import run_config_from_json
    from lba_cli.models import create_model

    run_config = run_config_from_json(config)
    task = "affinity" if run_config.kind is RunKind.finetune else "neighbor"
    model = create_model(run_config.model, run_config.grid.num_channels, task)
    model.load_state_dict(state)
    return sum(p.numel() for p in model.parameters())


def export_run(store: RunStore, ref: str, out_dir: Path, which: str = "best") -> ExportResult:
    """Write a run's model as a self-contained folder (see the module docstring).

    Args:
        store: the run store.
        ref: run id, prefix, name or directory.
        out_dir: the folder to create; it must not exist (or be empty).
        which: the checkpoint, ``best`` or ``last``.

    Returns:
        An `ExportResult`.

    Raises:
        RunNotFoundError: for an unknown run.
        StoreError: if ``out_dir`` exists and is not empty.
        DataError: if the checkpoint cannot be read.
    """
    from lba_cli import __version__
    from lba_cli.checkpoints import load_checkpoint, save_weights
    from lba_cli.compare import run_label

    run = store.resolve(ref)
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise StoreError(f"{out_dir} already exists\nexpected: a new folder for the exported model (or remove it)")
    payload = load_checkpoint(run.checkpoint_path(which))
    config = run.config  # with the provenance fields (lba version, git commit) of the run
    status = run.status
    state = payload["model"]

    data = _training_data(run, config) if run.kind == RunKind.finetune else None
    manifest: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_FORMAT_VERSION,
        "lba_version": __version__,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "run": {"id": run.id, "name": run.name, "kind": run.kind, "label": run_label(run, store),
                "status": status["status"], "checkpoint": which, "checkpoint_epoch": payload.get("epoch"),
                "best_epoch": status.get("best_epoch"), "epochs_done": status.get("epochs_done"),
                "lba_version": config.get("lba_version"), "git_sha": config.get("git_sha")},
        "parameters": _count_parameters(config, state),
        "target_scaling": _target_scaling(state) if run.kind == RunKind.finetune else None,
        "training_data": data,
        "structures": list(config.get("structures") or ()) if run.kind == RunKind.pretrain else None,
        "parent": _parent(run, store) if run.kind == RunKind.finetune else None,
        "metrics": (_metrics(run, Path(data["path"]) if data and data["sha256"] else None)
                    if run.kind == RunKind.finetune else
                    {k: v for k, v in status.get("metrics", {}).items() if k.startswith("val/")}),
        "packages": package_versions(),
    }
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        save_weights(tmp / WEIGHTS_NAME, state, {"format": EXPORT_FORMAT, "lba_version": __version__,
                                                 "run_id": run.id, "kind": run.kind})
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        if manifest["target_scaling"] is not None:
            (tmp / SCALING_NAME).write_text(json.dumps(manifest["target_scaling"], indent=2) + "\n")
        (tmp / MANIFEST_NAME).write_text(json.dumps(_json_ready(manifest), indent=2, sort_keys=True,
                                                    allow_nan=False) + "\n")
        (tmp / CARD_NAME).write_text(make_model_card(manifest, config))
        if out_dir.exists():
            out_dir.rmdir()  # empty, checked above
        tmp.rename(out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return ExportResult(out_dir, manifest)


def _json_ready(value: Any) -> Any:
    """NaN (an undefined correlation) and infinities have no JSON form: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value
