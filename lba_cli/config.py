"""Frozen, self-validating configuration dataclasses, one per concern.

Precedence: dataclass defaults < TOML file (``--config``) < command-line options. Command-line
options default to ``None`` and are dropped before a dataclass is built, so every default
lives here and only here. A resolved `RunConfig` is written to ``runs/<id>/config.json``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from lba_cli.choices import RunKind, is_device_name
from lba_cli.errors import ConfigError

__all__ = [
    "GridConfig",
    "ModelConfig",
    "TrainConfig",
    "NeighborConfig",
    "FinetuneConfig",
    "RunConfig",
    "PRETRAIN_TRAIN_DEFAULTS",
    "FINETUNE_TRAIN_DEFAULTS",
    "parse_channels",
    "format_channels",
    "config_to_dict",
    "config_from_dict",
    "run_config_from_json",
    "build_run_config",
    "config_to_toml",
]

_RUN_ID = re.compile(r"^\d{8}-\d")
DEFAULT_CHANNELS: tuple[tuple[str, ...], ...] = (("C",), ("N",), ("O",), ("P",), ("S", "SE"), ("*",))


# The command-line option of each field, so that messages speak the user's language.
OPTION_NAMES = {
    "box_size_voxels": "--box-size", "resolution_A": "--resolution", "radius_A": "--radius", "channels": "--channels",
    "widths": "--width", "bottleneck_divisor": "--bottleneck-divisor", "blocks": "--blocks", "dropout": "--dropout",
    "head_hidden": "--head-hidden", "num_epochs": "--epochs", "batch_size": "--batch-size", "lr": "--lr",
    "patience": "--patience", "device": "--device", "num_workers": "--workers", "pad_min_A": "--pad MIN",
    "pad_max_A": "--pad MAX", "angle_deg": "--angle", "epoch_size": "--epoch-size", "val_size": "--val-size",
    "curriculum_epochs": "--curriculum", "freeze": "--freeze", "unfreeze_after": "--unfreeze-after",
    "encoder_lr_scale": "--encoder-lr-scale", "data_path": "DATA", "structures": "--structures", "name": "--name",
}


def _check(condition: bool, name: str, value: Any, expected: str) -> None:
    if not condition:
        option = OPTION_NAMES.get(name)
        label = f"{option} ({name})" if option else name
        raise ConfigError(f"invalid {label}: {value!r}\nexpected: {expected}")


def parse_channels(spec: str) -> tuple[tuple[str, ...], ...]:
    """Parse a channel specification such as ``"C;N;O;P;S,SE;*"``.

    Groups are separated by ``;`` and elements inside a group by ``,``; ``*`` is the group of
    every element not named elsewhere. Element symbols are upper-cased.

    Raises:
        ConfigError: on an empty group, a repeated element or a repeated ``*``.
    """
    groups = tuple(
        tuple(element.strip().upper() for element in group.split(",") if element.strip())
        for group in spec.split(";")
    )
    _check(all(groups), "channels", spec, 'groups separated by ";", elements by ",", e.g. "C;N;O;P;S,SE;*"')
    flat = [element for group in groups for element in group]
    _check(len(flat) == len(set(flat)), "channels", spec, "each element (and *) in one group only")
    return groups


def format_channels(channels: tuple[tuple[str, ...], ...]) -> str:
    """Inverse of `parse_channels`."""
    return ";".join(",".join(group) for group in channels)


@dataclass(frozen=True)
class GridConfig:
    """How complexes become voxel grids (SPEC §3).

    Attributes:
        box_size_voxels: voxels per side L of the cubic grid.
        resolution_A: edge of one voxel, in Å.
        radius_A: radius of the hard sphere that stands for each atom, in Å.
        channels: element groups, one channel each; ``*`` collects every other element.
        protein_channel: add one last channel that flags protein atoms.
        keep_hydrogens: keep H and D atoms (dropped by default).
        keep_water: keep water molecules (dropped by default).
    """

    box_size_voxels: int = 21
    resolution_A: float = 1.0
    radius_A: float = 0.5
    channels: tuple[tuple[str, ...], ...] = DEFAULT_CHANNELS
    protein_channel: bool = True
    keep_hydrogens: bool = False
    keep_water: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.channels, str):
            object.__setattr__(self, "channels", parse_channels(self.channels))
        else:
            object.__setattr__(self, "channels", tuple(tuple(g) for g in self.channels))
        _check(3 <= self.box_size_voxels <= 256, "box_size_voxels", self.box_size_voxels, "an integer in [3, 256]")
        _check(0.05 <= self.resolution_A <= 10, "resolution_A", self.resolution_A, "a number of Å in [0.05, 10]")
        _check(0.05 <= self.radius_A <= 5, "radius_A", self.radius_A, "a number of Å in [0.05, 5]")
        _check(len(self.channels) >= 1, "channels", self.channels, "at least one element group")

    @property
    def num_channels(self) -> int:
        """Number of channels C of every grid."""
        return len(self.channels) + int(self.protein_channel)

    @property
    def channel_names(self) -> tuple[str, ...]:
        """One name per channel, e.g. ``("C", "N", "O", "P", "S,SE", "*", "protein")``."""
        names = tuple(",".join(group) for group in self.channels)
        return names + (("protein",) if self.protein_channel else ())

    @property
    def box_size_A(self) -> float:
        """Edge of the box in Å."""
        return self.box_size_voxels * self.resolution_A

    @property
    def reach_A(self) -> float:
        """Distance from the box centre beyond which no atom can touch the box in any orientation."""
        return math.sqrt(3.0) * self.box_size_A / 2 + self.radius_A


@dataclass(frozen=True)
class ModelConfig:
    """Which network to build (SPEC §5); ``None`` fields take the architecture's default.

    Attributes:
        arch: registered architecture name (`lba_cli.models.registry.ARCHITECTURES`); None
            means the registry's `DEFAULT_ARCH` for a new model, or the checkpoint's for
            ``finetune --init RUN``.
        widths: channels of the stem and of each stage, e.g. ``(64, 128, 256, 512)``.
        bottleneck_divisor: bottleneck width = block input channels / this (bottleneck archs).
        blocks: residual blocks per stage (ResNets; the first of each stage halves the grid).
        dropout: dropout probability in the head(s).
        head_hidden: hidden units of the regression head.
    """

    arch: str | None = None
    widths: tuple[int, ...] | None = None
    bottleneck_divisor: int | None = None
    blocks: int | None = None
    dropout: float = 0.5
    head_hidden: int = 256

    def __post_init__(self) -> None:
        if self.widths is not None:
            object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
            _check(len(self.widths) >= 2 and all(w > 0 for w in self.widths), "widths", self.widths,
                   "at least two positive channel counts, e.g. 64 128 256 512")
        _check(self.bottleneck_divisor is None or self.bottleneck_divisor >= 1, "bottleneck_divisor",
               self.bottleneck_divisor, "an integer >= 1")
        _check(self.blocks is None or 1 <= self.blocks <= 8, "blocks", self.blocks, "an integer in [1, 8]")
        _check(0.0 <= self.dropout < 1.0, "dropout", self.dropout, "a probability in [0, 1)")
        _check(self.head_hidden >= 1, "head_hidden", self.head_hidden, "an integer >= 1")


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation loop shared by pre-training and fine-tuning.

    Attributes:
        num_epochs: epochs to train.
        batch_size: examples (or view pairs) per step.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        patience: stop after this many epochs without a better validation loss (None: never).
        seed: seed of every random generator of the run.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        deterministic: ask torch for deterministic algorithms.
        num_workers: DataLoader worker processes (results do not depend on it).
    """

    num_epochs: int = 20
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int | None = None
    seed: int = 0
    device: str = "auto"
    deterministic: bool = False
    num_workers: int = 0

    def __post_init__(self) -> None:
        _check(self.num_epochs >= 1, "num_epochs", self.num_epochs, "an integer >= 1")
        _check(self.batch_size >= 1, "batch_size", self.batch_size, "an integer >= 1")
        _check(0 < self.lr < 10, "lr", self.lr, "a learning rate in (0, 10)")
        _check(self.weight_decay >= 0, "weight_decay", self.weight_decay, "a number >= 0")
        _check(self.patience is None or self.patience >= 1, "patience", self.patience, "an integer >= 1")
        _check(self.num_workers >= 0, "num_workers", self.num_workers, "an integer >= 0")
        _check(is_device_name(self.device), "device", self.device, "auto, cpu, cuda or cuda:N")


PRETRAIN_TRAIN_DEFAULTS = TrainConfig(num_epochs=10, batch_size=64)
FINETUNE_TRAIN_DEFAULTS = TrainConfig(num_epochs=20, batch_size=16)


@dataclass(frozen=True)
class NeighborConfig:
    """The neighbor-location pre-training task (SPEC §4).

    Attributes:
        pad_min_A: minimum padding between the two views, in Å.
        pad_max_A: maximum padding, in Å; training padding is pad_min_A + U(0, max - min).
        angle_deg: maximum rotation of the neighbour view about its own centre, in degrees.
        epoch_size: training view pairs per epoch.
        val_size: fixed validation view pairs.
        val_fraction: share of structures held out for validation.
        min_density_per_nm3: minimum atom density around both view centres, atoms per nm³.
        curriculum_epochs: ramp the padding noise and angle from zero over this many epochs.
    """

    pad_min_A: float = 1.0
    pad_max_A: float = 2.0
    angle_deg: float = 20.0
    epoch_size: int = 2048
    val_size: int = 512
    val_fraction: float = 0.1
    min_density_per_nm3: float = 40.0
    curriculum_epochs: int = 0

    def __post_init__(self) -> None:
        _check(self.pad_min_A >= 0, "pad_min_A", self.pad_min_A, "a padding >= 0 Å")
        _check(self.pad_max_A >= self.pad_min_A, "pad_max_A", self.pad_max_A,
               f"a padding >= pad_min_A ({self.pad_min_A} Å)")
        _check(0 <= self.angle_deg <= 180, "angle_deg", self.angle_deg, "an angle in [0, 180] degrees")
        _check(self.epoch_size >= 1, "epoch_size", self.epoch_size, "an integer >= 1")
        _check(self.val_size >= 1, "val_size", self.val_size, "an integer >= 1")
        _check(0 < self.val_fraction < 1, "val_fraction", self.val_fraction, "a fraction in (0, 1)")
        _check(self.min_density_per_nm3 >= 0, "min_density_per_nm3", self.min_density_per_nm3, "a density >= 0")
        _check(self.curriculum_epochs >= 0, "curriculum_epochs", self.curriculum_epochs, "an integer >= 0")

    @property
    def label(self) -> str:
        """The short label of the task's difficulty, ``min-max-angle`` (e.g. ``1-2-20``)."""
        return "-".join(f"{v:g}" for v in (self.pad_min_A, self.pad_max_A, self.angle_deg))


@dataclass(frozen=True)
class FinetuneConfig:
    """Affinity regression on an `lba voxelize` file (SPEC §6).

    Attributes:
        data_path: the HDF5 file written by ``lba voxelize``.
        init: ``random`` or the id of the pre-training run whose encoder starts the model.
        freeze: train the head only (encoder BatchNorm in eval mode).
        unfreeze_after: train the head only for this many epochs, then everything.
        encoder_lr_scale: the encoder's learning rate is ``lr`` times this.
        rotate: a fresh uniformly random rotation of each training example every epoch.
    """

    data_path: str = ""
    init: str = "random"
    freeze: bool = False
    unfreeze_after: int | None = None
    encoder_lr_scale: float = 1.0
    rotate: bool = True

    def __post_init__(self) -> None:
        _check(bool(self.data_path), "data_path", self.data_path, "the path of an lba voxelize HDF5 file")
        _check(not (self.freeze and self.init == "random"), "freeze", self.freeze,
               "--freeze only with --init RUN (a frozen random encoder learns nothing)")
        _check(self.unfreeze_after is None or self.unfreeze_after >= 1, "unfreeze_after", self.unfreeze_after,
               "an integer >= 1")
        _check(not (self.freeze and self.unfreeze_after), "unfreeze_after", self.unfreeze_after,
               "either --freeze (never unfreeze) or --unfreeze-after N, not both")
        _check(0 <= self.encoder_lr_scale <= 100, "encoder_lr_scale", self.encoder_lr_scale, "a factor in [0, 100]")

    def encoder_frozen(self, epoch: int) -> bool:
        """Whether the encoder is frozen in ``epoch`` (0-based)."""
        return self.freeze or (self.unfreeze_after is not None and epoch < self.unfreeze_after)


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one run; written to ``runs/<id>/config.json``."""

    kind: RunKind
    grid: GridConfig = field(default_factory=GridConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    neighbor: NeighborConfig | None = None
    finetune: FinetuneConfig | None = None
    structures: tuple[str, ...] = ()
    exclude_ids: tuple[str, ...] = ()
    name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", RunKind(self.kind))
        _check(self.name is None or (self.name.strip() and self.name != "random" and not _RUN_ID.match(self.name)),
               "name", self.name, "a human name that is not 'random' and does not look like a run id")
        if self.kind is RunKind.pretrain:
            _check(self.neighbor is not None and bool(self.structures), "structures", self.structures,
                   "pre-training needs --structures and a neighbor task")
        else:
            _check(self.finetune is not None, "finetune", self.finetune, "fine-tuning needs a data file")


def config_to_dict(config: Any) -> Any:
    """Turn a (nested) config dataclass into JSON-ready dicts, lists and scalars."""
    if dataclasses.is_dataclass(config):
        return {f.name: config_to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, Enum):
        return config.value
    if isinstance(config, (tuple, list)):
        return [config_to_dict(v) for v in config]
    return config


_NESTED = {"grid": GridConfig, "model": ModelConfig, "train": TrainConfig,
           "neighbor": NeighborConfig, "finetune": FinetuneConfig}


def _tuplify(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuplify(v) for v in value)
    return value


def _build(cls: type, data: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}\nexpected: {', '.join(sorted(names))}")
    return cls(**{k: _tuplify(v) for k, v in data.items()})


def config_from_dict(data: dict[str, Any]) -> RunConfig:
    """Rebuild a `RunConfig` from `config_to_dict` output (e.g. a run's config.json).

    Raises:
        ConfigError: on unknown fields or invalid values.
    """
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key in _NESTED:
            kwargs[key] = None if value is None else _build(_NESTED[key], value)
        else:
            kwargs[key] = _tuplify(value)
    return _build(RunConfig, kwargs)


def run_config_from_json(data: dict[str, Any]) -> RunConfig:
    """Rebuild a `RunConfig` from a run's ``config.json`` (ignores the provenance fields)."""
    return config_from_dict({k: v for k, v in data.items() if k not in _PROVENANCE})


_PROVENANCE = ("lba_version", "git_sha")


_SECTIONS = ("grid", "model", "train", "neighbor", "finetune")
_TOP_LEVEL = ("name", "structures", "exclude_ids")


def _read_toml(path: Path) -> dict[str, Any]:
    import tomllib

    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"cannot read config file {path}: {error}") from None
    unknown = sorted(set(data) - set(_SECTIONS) - set(_TOP_LEVEL) - {"kind"})
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}\n"
                          f"expected sections [{'], ['.join(_SECTIONS)}] and keys {', '.join(_TOP_LEVEL)}")
    return data


def build_run_config(kind: RunKind | str, config_file: Path | None, overrides: dict[str, Any]) -> RunConfig:
    """Resolve a run configuration: dataclass defaults < TOML file < command-line options.

    Args:
        kind: ``pretrain`` or ``finetune`` (picks the training defaults and the task section).
        config_file: a TOML file with sections ``[grid]``, ``[model]``, ``[train]``,
            ``[neighbor]`` or ``[finetune]`` and top-level ``name``, ``structures``,
            ``exclude_ids`` (see `config_to_toml`), or None.
        overrides: the same layout from the command line; ``None`` values mean "not given".

    Raises:
        ConfigError: on unknown keys or invalid values, naming the field.
    """
    kind = RunKind(kind)
    data = _read_toml(config_file) if config_file is not None else {}
    if data.get("kind", kind.value) != kind.value:
        raise ConfigError(f"{config_file} is a {data['kind']} config\nexpected: a {kind.value} config")
    merged: dict[str, Any] = {}
    for section in _SECTIONS:
        values = dict(data.get(section) or {})
        values.update({k: v for k, v in (overrides.get(section) or {}).items() if v is not None})
        merged[section] = values
    for key in _TOP_LEVEL:
        value = overrides.get(key)
        merged[key] = value if value is not None else data.get(key)
    train_defaults = PRETRAIN_TRAIN_DEFAULTS if kind is RunKind.pretrain else FINETUNE_TRAIN_DEFAULTS
    train = dataclasses.replace(train_defaults, **{k: _tuplify(v) for k, v in _checked(TrainConfig, merged["train"]).items()})
    task: dict[str, Any] = {}
    if kind is RunKind.pretrain:
        task["neighbor"] = _build(NeighborConfig, merged["neighbor"])
    else:
        task["finetune"] = _build(FinetuneConfig, merged["finetune"])
    return RunConfig(
        kind=kind, grid=_build(GridConfig, merged["grid"]), model=_build(ModelConfig, merged["model"]), train=train,
        structures=tuple(str(p) for p in merged["structures"] or ()),
        exclude_ids=tuple(merged["exclude_ids"] or ()), name=merged["name"], **task,
    )


def _checked(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}\nexpected: {', '.join(sorted(names))}")
    return data


def config_to_toml(config: RunConfig) -> str:
    """The configuration as TOML that `build_run_config` reads back (None values left out)."""
    import tomli_w

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if v is not None}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    data = clean(config_to_dict(config))
    data["grid"]["channels"] = format_channels(config.grid.channels)
    return tomli_w.dumps(data)
