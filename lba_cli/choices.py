"""The closed sets of names that the command line and the core share.

Each set is defined here once, as a ``str`` enum, so that Typer shows the choices, values
serialise as plain strings, and ``choice == "pretrain"`` still holds. This module imports
nothing but the standard library: the CLI imports it at start-up (``lba --help`` stays fast)
and the core validates with it.
"""

from __future__ import annotations

import re
from enum import Enum

__all__ = [
    "SourceFormat",
    "SplitName",
    "SPLITS",
    "ALL_COMPLEXES",
    "EvaluationSplit",
    "SplitKind",
    "RunKind",
    "Schedule",
    "RunStatus",
    "DEVICE_NAMES",
    "is_device_name",
    "LabelUnit",
    "HEADLINE_METRICS",
]


class SourceFormat(str, Enum):
    """Input layouts `lba voxelize` reads (`lba_cli.data.sources`); ``auto`` detects each."""

    auto = "auto"
    atom3d = "atom3d"
    pdbbind = "pdbbind"
    folders_csv = "folders-csv"
    csv = "csv"
    sdf_series = "sdf-series"


class SplitName(str, Enum):
    """The three splits of a data set."""

    train = "train"
    val = "val"
    test = "test"


SPLITS: tuple[str, ...] = tuple(split.value for split in SplitName)
ALL_COMPLEXES = "all"  # every complex of a file, whatever its split (an outside data set)


class EvaluationSplit(str, Enum):
    """What `lba evaluate` scores: one split of a data file, or all of its complexes."""

    train = "train"
    val = "val"
    test = "test"
    all = ALL_COMPLEXES


class SplitKind(str, Enum):
    """How `lba voxelize` assigns splits: the source's own, whole proteins, or at random."""

    predefined = "predefined"
    protein = "protein"
    random = "random"


class RunKind(str, Enum):
    """What a run trains."""

    pretrain = "pretrain"
    finetune = "finetune"


class Schedule(str, Enum):
    """The learning rate's shape over training, after the warm-up (`lba_cli.optim.lr_factor`)."""

    constant = "constant"
    cosine = "cosine"
    onecycle = "onecycle"


class RunStatus(str, Enum):
    """The status of a run; ``crashed`` is never written, only read (a ``running`` run whose
    process is gone)."""

    created = "created"
    running = "running"
    completed = "completed"
    interrupted = "interrupted"
    failed = "failed"
    crashed = "crashed"
    damaged = "damaged"


DEVICE_NAMES = ("auto", "cpu", "cuda")
_CUDA_INDEX = re.compile(r"^cuda:\d+$")


def is_device_name(name: str) -> bool:
    """True for ``auto``, ``cpu``, ``cuda`` and ``cuda:N`` (availability is checked later)."""
    return name in DEVICE_NAMES or bool(_CUDA_INDEX.match(name))


class LabelUnit(str, Enum):
    """Units of an affinity read from an SDF property: pK; a Kd/Ki/IC50 concentration; or a
    binding free energy ΔG (converted at 298.15 K)."""

    pk = "pK"
    molar = "M"
    millimolar = "mM"
    micromolar = "uM"
    nanomolar = "nM"
    picomolar = "pM"
    kcal_per_mol = "kcal/mol"
    kj_per_mol = "kJ/mol"


# What progress shows after each epoch and what `lba plot` draws by default, per run kind;
# the names are `lba_cli.metrics` metrics recorded as ``<split>/<name>``.
HEADLINE_METRICS: dict[RunKind, tuple[str, ...]] = {
    RunKind.pretrain: ("train/loss", "train/accuracy", "val/loss", "val/accuracy", "val/shortcut_accuracy",
                       "val/slab_shortcut_accuracy"),
    RunKind.finetune: ("train/loss", "val/loss", "val/rmse", "val/pearson"),
}
