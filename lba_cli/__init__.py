"""lba: protein-ligand binding-affinity prediction with voxel 3D CNNs.

The public core API is re-exported here lazily, so that ``import lba_cli`` (and therefore
``lba --help``) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "GridConfig": "lba_cli.config",
    "ModelConfig": "lba_cli.config",
    "TrainConfig": "lba_cli.config",
    "NeighborConfig": "lba_cli.config",
    "FinetuneConfig": "lba_cli.config",
    "RunConfig": "lba_cli.config",
    "LbaError": "lba_cli.errors",
    "voxelize": "lba_cli.voxel",
    "voxelize_batch": "lba_cli.voxel",
    "build_dataset": "lba_cli.data.build",
    "read_grid_set": "lba_cli.data.grids_h5",
    "build_corpus": "lba_cli.corpus",
    "Corpus": "lba_cli.corpus",
    "sequence_identity": "lba_cli.identity",
    "create_model": "lba_cli.models",
    "list_models": "lba_cli.models",
    "pretrain": "lba_cli.pretrain",
    "finetune": "lba_cli.finetune",
    "evaluate_run": "lba_cli.evaluate",
    "predict_complexes": "lba_cli.predict",
    "resolve_predictors": "lba_cli.predict",
    "export_run": "lba_cli.export",
    "read_export": "lba_cli.export",
    "RunStore": "lba_cli.runs",
    "compare_runs": "lba_cli.compare",
    "plot_curves": "lba_cli.plots",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lba_cli' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
