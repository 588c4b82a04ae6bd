"""Frozen, self-validating configuration dataclasses, one per concern.

Precedence: dataclass defaults < TOML file (``--config``) < command-line options. Command-line
options default to ``None`` and are dropped before a dataclass is built, so every default
lives here and only here. A resolved `RunConfig` is written to ``runs/<id>/config.json``.

Each field that the command line sets carries its `CliOption` (flag, help, help panel) in
its metadata; `lba_cli.cli.options` builds the Typer options from it, showing the field's
default, and error messages name the field by that flag. So a new option is a field here
with ``metadata=option(...)`` and one line in a command's signature.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path, PurePath
from typing import Any

from lba_cli.choices import RunKind, Schedule, is_device_name
from lba_cli.errors import ConfigError
from lba_cli.models.registry import ARCHITECTURES, DEFAULT_ARCH, describe_architectures

__all__ = [
    "GridConfig",
    "ModelConfig",
    "TrainConfig",
    "NeighborConfig",
    "FinetuneConfig",
    "RunConfig",
    "CliOption",
    "option",
    "cli_option",
    "SECTIONS",
    "TRAIN_DEFAULTS",
    "parse_channels",
    "format_channels",
    "read_exclude_ids",
    "config_to_dict",
    "config_from_dict",
    "run_config_from_json",
    "build_run_config",
    "config_to_toml",
]

_RUN_ID = re.compile(r"^\d{8}-\d")
_MAX_WORKERS = 256  # data-loading processes; more is a typo (each one holds a copy of the data)
DEFAULT_CHANNELS: tuple[tuple[str, ...], ...] = (("C",), ("N",), ("O",), ("P",), ("S", "SE"), ("*",))


@dataclass(frozen=True)
class CliOption:
    """How a config field appears on the command line.

    Attributes:
        flag: ``--batch-size``; ``--rotate/--no-rotate`` for an on/off switch; a name
            without dashes (``DATA``) for a positional argument.
        help: one sentence, without the default (it is added from the field).
        panel: the ``--help`` panel: Data, Task, Grid, Model, Optimization or System.
        part: for one of several fields set by one option (``--pad MIN MAX``), which value
            this field is (``MIN``); the option's metavar is the parts in field order.
        default_text: what to show as the default when the field's value does not say it
            (a None that means "the architecture's").
        cli_type: the command-line value's type when it is not the field's (``str`` for
            channels, ``Path`` for files).
        existing_file: the value must name an existing file (Typer checks it).
        parse: turns the command-line value into the field's (a file of ids -> the ids).
    """

    flag: str
    help: str
    panel: str
    part: str = ""
    default_text: str | None = None
    cli_type: Any = None
    existing_file: bool = False
    parse: Callable[[Any], Any] | None = None

    @property
    def name(self) -> str:
        """How messages name the option: ``--pad MIN``, ``--batch-size``, ``DATA``."""
        return f"{self.flag.split('/')[0]} {self.part}".strip()

    def to_field(self, value: Any) -> Any:
        """The field's value for a command-line value (paths become strings, lists tuples)."""
        if self.parse is not None:
            return self.parse(value)
        if isinstance(value, (list, tuple)):
            return tuple(str(v) if isinstance(v, PurePath) else v for v in value)
        return str(value) if isinstance(value, PurePath) else value


def option(flag: str, help: str, panel: str, **details: Any) -> dict[str, CliOption]:
    """Field metadata for a config field set by a command-line option (see `CliOption`)."""
    return {"cli": CliOption(flag, help, panel, **details)}


def cli_option(cls: type, name: str) -> CliOption | None:
    """The `CliOption` of field ``name`` of config class ``cls`` (None if it has none)."""
    return next(f.metadata.get("cli") for f in dataclasses.fields(cls) if f.name == name)


def _check(config: Any, condition: bool, name: str, value: Any, expected: str) -> None:
    """Raise `ConfigError` naming the field by its command-line option unless ``condition``."""
    if not condition:
        cls = config if isinstance(config, type) else type(config)
        cli = cli_option(cls, name)
        label = f"{cli.name} ({name})" if cli else name
        raise ConfigError(f"invalid {label}: {value!r}\nexpected: {expected}")


_TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "text"}
# Fields that also take a value of another type, converted in __post_init__ (the channel spec as text).
_ALSO_ACCEPTED: dict[tuple[str, str], type] = {("GridConfig", "channels"): str}


@functools.cache
def _field_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _matches(hint: Any, value: Any) -> bool:
    """Whether ``value`` is of the type ``hint`` (an int is a float; a bool is no number)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(arg, value) for arg in args)
    if hint is type(None):
        return value is None
    if origin is tuple:
        return isinstance(value, (tuple, list)) and all(_matches(args[0], v) for v in value)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if isinstance(hint, type) and issubclass(hint, Enum):
        return isinstance(value, hint) or value in {m.value for m in hint}
    return True  # nested config sections are built and checked by their own class


def _expected(hint: Any) -> str:
    """``tuple[int, ...] | None`` -> "a list of integers"."""
    origin, args = typing.get_origin(hint), [a for a in typing.get_args(hint) if a is not type(None)]
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_expected(a) for a in args)
    if origin is tuple:
        inner = _expected(args[0])
        return "a list of " + (inner.removeprefix("an ").removeprefix("a ") + "s" if inner != "text" else "text values")
    if isinstance(hint, type) and issubclass(hint, Enum):
        return "one of " + ", ".join(m.value for m in hint)
    return _TYPE_WORDS.get(hint, getattr(hint, "__name__", str(hint)))


def _given(value: Any) -> str:
    for kind, word in ((bool, "true/false"), (int, "an integer"), (float, "a number"), (str, "text"),
                       ((list, tuple), "a list"), (dict, "a table")):
        if isinstance(value, kind):
            return word
    return type(value).__name__


def check_types(cls: type, values: dict[str, Any], where: str = "") -> None:
    """Refuse values of the wrong type before anything runs: ``num_epochs = "2"`` (text for an
    integer), ``batch_size = 4.0`` (a number with a fraction part for an integer), ``true``
    for a number. Names not among ``cls``'s fields are left to the caller.

    Args:
        cls: a config dataclass.
        values: field name -> value, e.g. one ``[train]`` table of a TOML file.
        where: where the values come from, for the message (e.g. `` in run.toml [train]``).

    Raises:
        ConfigError: naming the field (by its option too), the value given and its type,
            and the type expected.
    """
    hints = _field_hints(cls)
    for name, value in values.items():
        if name not in hints or _matches(hints[name], value):
            continue
        also = _ALSO_ACCEPTED.get((cls.__name__, name))
        if also is not None and isinstance(value, also):
            continue
        expected = _expected(hints[name])
        if isinstance(value, str) and expected in ("an integer", "a number"):
            try:
                float(value)
                expected += f" (write {name} = {value.strip()}, without quotes)"
            except ValueError:
                pass
        elif isinstance(value, float) and expected.startswith("an integer") and value.is_integer():
            expected += f" (write {name} = {int(value)}, without the decimal point)"
        cli = cli_option(cls, name)
        label = f"{cli.name} ({name})" if cli else name
        raise ConfigError(f"invalid {label}: {value!r} ({_given(value)}){where}\nexpected: {expected}")


def _check_own_types(config: Any) -> None:
    """`check_types` over a config's own field values (command line, API, config.json); an
    integer given for a number field becomes a float."""
    check_types(type(config), {f.name: getattr(config, f.name) for f in dataclasses.fields(config)})
    for name, hint in _field_hints(type(config)).items():
        value = getattr(config, name)
        if hint in (float, float | None) and isinstance(value, int) and not isinstance(value, bool):
            object.__setattr__(config, name, float(value))


def read_exclude_ids(path: Path) -> tuple[str, ...]:
    """Ids to leave out of pre-training, sorted: one per line (or whitespace-separated),
    ``#`` comments, lower-cased (PDB codes or file stems).

    Raises:
        ConfigError: if the file cannot be read as text.
    """
    words = []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"cannot read {path}: not UTF-8 text\nexpected: ids, one per line") from None
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror or error}") from None
    for line in text.splitlines():
        words.extend(line.split("#")[0].split())
    return tuple(sorted({w.lower() for w in words}))


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
    _check(GridConfig, all(groups), "channels", spec,
           'groups separated by ";", elements by ",", e.g. "C;N;O;P;S,SE;*"')
    flat = [element for group in groups for element in group]
    _check(GridConfig, len(flat) == len(set(flat)), "channels", spec, "each element (and *) in one group only")
    return groups


def format_channels(channels: tuple[tuple[str, ...], ...]) -> str:
    """Inverse of `parse_channels`."""
    return ";".join(",".join(group) for group in channels)


@dataclass(frozen=True)
class GridConfig:
    """How complexes become voxel grids: an L x L x L box of ``resolution_A`` voxels, each atom a
    hard sphere of ``radius_A`` adding the fraction of its volume in each voxel.

    Attributes:
        box_size_voxels: voxels per side L of the cubic grid.
        resolution_A: edge of one voxel, in Å.
        radius_A: radius of the hard sphere that stands for each atom, in Å.
        channels: element groups, one channel each; ``*`` collects every other element.
        protein_channel: add one last channel that flags protein atoms.
        keep_hydrogens: keep H and D atoms (dropped by default).
        keep_water: keep water molecules (dropped by default).
    """

    box_size_voxels: int = field(default=21, metadata=option("--box-size", "Voxels per side of the box.", "Grid"))
    resolution_A: float = field(default=1.0, metadata=option("--resolution", "Voxel edge, Å.", "Grid"))
    radius_A: float = field(default=0.5, metadata=option("--radius", "Atom sphere radius, Å.", "Grid"))
    channels: tuple[tuple[str, ...], ...] = field(default=DEFAULT_CHANNELS, metadata=option(
        "--channels", 'Element groups, one channel each: ";" between groups, "," inside one, "*" for the rest.',
        "Grid", cli_type=str, default_text='"C;N;O;P;S,SE;*"'))
    protein_channel: bool = field(default=True, metadata=option(
        "--protein-channel/--no-protein-channel", "Add a channel flagging protein atoms.", "Grid"))
    keep_hydrogens: bool = field(default=False, metadata=option("--keep-hydrogens", "Keep H and D atoms.", "Grid"))
    keep_water: bool = field(default=False, metadata=option("--keep-water", "Keep waters.", "Grid"))

    def __post_init__(self) -> None:
        _check_own_types(self)
        if isinstance(self.channels, str):
            object.__setattr__(self, "channels", parse_channels(self.channels))
        else:
            object.__setattr__(self, "channels", tuple(tuple(g) for g in self.channels))
        _check(self, 3 <= self.box_size_voxels <= 256, "box_size_voxels", self.box_size_voxels,
               "an integer in [3, 256]")
        _check(self, 0.05 <= self.resolution_A <= 10, "resolution_A", self.resolution_A, "a number of Å in [0.05, 10]")
        _check(self, 0.05 <= self.radius_A <= 5, "radius_A", self.radius_A, "a number of Å in [0.05, 5]")
        _check(self, len(self.channels) >= 1, "channels", self.channels, "at least one element group")

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


_DEFAULT_ARCH_SPEC = ARCHITECTURES[DEFAULT_ARCH]


@dataclass(frozen=True)
class ModelConfig:
    """Which network to build (`lba_cli.models`); ``None`` fields take the architecture's default.

    Attributes:
        arch: registered architecture name (`lba_cli.models.registry.ARCHITECTURES`); None
            means the registry's `DEFAULT_ARCH` for a new model, or the checkpoint's for
            ``finetune --init RUN``.
        widths: channels of the stem and of each stage, e.g. ``(64, 128, 256, 512)``.
        bottleneck_divisor: bottleneck width = block input channels / this (bottleneck archs).
        blocks: residual blocks per stage (ResNets; the first of each stage halves the grid).
        dropout: dropout probability in the head(s).
        head_hidden: hidden units of the regression head.
        pair_head: the neighbor-location head (pre-training only): ``faces`` scores each face
            from the two views' last feature maps at the faces that would touch
            (`lba_cli.models.heads.FacePairHead`); ``pooled`` classifies the two pooled feature
            vectors. Fine-tuning uses the encoder's pooled features either way.
    """

    arch: str | None = field(default=None, metadata=option(
        "--arch", f"Encoder: {describe_architectures()}.", "Model",
        default_text=f"{DEFAULT_ARCH}; fine-tuning from a run: the run's"))
    widths: tuple[int, ...] | None = field(default=None, metadata=option(
        "--width", "Stem then stage widths, repeated (--width 64 --width 128 ...).", "Model",
        default_text=f"the architecture's; {DEFAULT_ARCH}: {' '.join(map(str, _DEFAULT_ARCH_SPEC.widths))}"))
    bottleneck_divisor: int | None = field(default=None, metadata=option(
        "--bottleneck-divisor", "Bottleneck width = block input channels / this.", "Model",
        default_text=f"the architecture's; {DEFAULT_ARCH}: {_DEFAULT_ARCH_SPEC.bottleneck_divisor}"))
    blocks: int | None = field(default=None, metadata=option(
        "--blocks", "Residual blocks per stage.", "Model",
        default_text=f"the architecture's; {DEFAULT_ARCH}: {_DEFAULT_ARCH_SPEC.blocks}"))
    dropout: float = field(default=0.5, metadata=option("--dropout", "Dropout probability in the head(s).", "Model"))
    head_hidden: int = field(default=256, metadata=option(
        "--head-hidden", "Hidden units of the regression head.", "Model"))
    pair_head: str = field(default="faces", metadata=option(
        "--pair-head", "Neighbor-location head: faces (features where the views' faces touch) or pooled "
        "(pooled features of both views).", "Model"))

    def __post_init__(self) -> None:
        _check_own_types(self)
        _check(self, self.arch is None or self.arch in ARCHITECTURES, "arch", self.arch,
               f"one of {', '.join(sorted(ARCHITECTURES))}")
        if self.widths is not None:
            object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
            _check(self, len(self.widths) >= 2 and all(w > 0 for w in self.widths), "widths", self.widths,
                   "at least two positive channel counts, e.g. 64 128 256 512")
        _check(self, self.bottleneck_divisor is None or self.bottleneck_divisor >= 1, "bottleneck_divisor",
               self.bottleneck_divisor, "an integer >= 1")
        _check(self, self.blocks is None or 1 <= self.blocks <= 8, "blocks", self.blocks, "an integer in [1, 8]")
        _check(self, 0.0 <= self.dropout < 1.0, "dropout", self.dropout, "a probability in [0, 1)")
        _check(self, self.head_hidden >= 1, "head_hidden", self.head_hidden, "an integer >= 1")
        _check(self, self.pair_head in ("faces", "pooled"), "pair_head", self.pair_head, "faces or pooled")


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation loop shared by pre-training and fine-tuning (defaults per kind:
    `TRAIN_DEFAULTS`).

    Attributes:
        num_epochs: epochs to train.
        batch_size: examples (or view pairs) per step.
        lr: peak learning rate of AdamW (Loshchilov & Hutter, "Decoupled Weight Decay
            Regularization", ICLR 2019; with ``weight_decay`` 0 it is Adam).
        weight_decay: AdamW's decoupled weight decay, on convolution and linear weights only
            (not on biases or BatchNorm parameters).
        schedule: the learning rate after the warm-up: ``constant``, ``cosine`` (to zero at
            the last step) or ``onecycle`` (see `lba_cli.optim.lr_factor`).
        warmup_epochs: epochs over which the learning rate rises to ``lr`` (may be fractional).
        clip_grad_norm: clip the global L2 norm of the gradients to this before each step
            (0: no clipping).
        ema_decay: keep an exponential moving average of the weights and BatchNorm statistics
            with this decay per step, and validate, select and save that average (0: none).
        precise_bn: before each validation, recompute the BatchNorm running statistics of the
            validated weights as exact averages over the epoch's training batches ("precise
            BatchNorm", Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021), instead of the
            running averages, which lag behind weights that move fast.
        patience: stop after this many epochs without a better validation loss (None: never).
        seed: seed of every random generator of the run.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        deterministic: ask torch for deterministic algorithms.
        num_workers: DataLoader worker processes (results do not depend on it).
    """

    num_epochs: int = field(default=20, metadata=option("--epochs", "Epochs to train.", "Optimization"))
    batch_size: int = field(default=16, metadata=option(
        "--batch-size", "Examples (view pairs in pre-training) per optimizer step.", "Optimization"))
    lr: float = field(default=1e-3, metadata=option(
        "--lr", "Peak AdamW learning rate (after the warm-up).", "Optimization"))
    weight_decay: float = field(default=0.0, metadata=option(
        "--weight-decay", "AdamW decoupled weight decay on convolution and linear weights.", "Optimization"))
    schedule: Schedule = field(default=Schedule.constant, metadata=option(
        "--schedule", "Learning rate after the warm-up: constant, cosine (to zero) or onecycle.", "Optimization"))
    warmup_epochs: float = field(default=0.0, metadata=option(
        "--warmup-epochs", "Epochs of linear learning-rate warm-up (may be fractional).", "Optimization"))
    clip_grad_norm: float = field(default=0.0, metadata=option(
        "--clip-grad-norm", "Clip the gradients' global L2 norm to this (0: no clipping).", "Optimization"))
    ema_decay: float = field(default=0.0, metadata=option(
        "--ema", "Validate and save an exponential moving average of the weights with this decay per step "
                 "(e.g. 0.99; 0: none).", "Optimization"))
    precise_bn: bool = field(default=False, metadata=option(
        "--precise-bn/--no-precise-bn", "Recompute BatchNorm statistics over the epoch's training batches before "
                                        "each validation.", "Optimization"))
    patience: int | None = field(default=None, metadata=option(
        "--patience", "Stop after this many epochs without a better validation loss.", "Optimization",
        default_text="never stop early"))
    seed: int = field(default=0, metadata=option("--seed", "Seed of every random draw of the run.", "System"))
    device: str = field(default="auto", metadata=option("--device", "auto, cpu, cuda or cuda:N.", "System"))
    deterministic: bool = field(default=False, metadata=option(
        "--deterministic", "Ask torch for deterministic algorithms (slower on CUDA).", "System"))
    num_workers: int = field(default=0, metadata=option(
        "--workers", "Data-loading worker processes (results do not depend on it).", "System"))

    def __post_init__(self) -> None:
        _check_own_types(self)
        _check(self, self.num_epochs >= 1, "num_epochs", self.num_epochs, "an integer >= 1")
        _check(self, self.batch_size >= 1, "batch_size", self.batch_size, "an integer >= 1")
        _check(self, 0 < self.lr < 10, "lr", self.lr, "a learning rate in (0, 10)")
        _check(self, self.schedule in [s.value for s in Schedule], "schedule", self.schedule,
               ", ".join(s.value for s in Schedule))
        object.__setattr__(self, "schedule", Schedule(self.schedule))
        _check(self, 0 <= self.weight_decay < 10, "weight_decay", self.weight_decay, "a number in [0, 10)")
        _check(self, 0 <= self.warmup_epochs <= 1000, "warmup_epochs", self.warmup_epochs,
               "a number of epochs in [0, 1000] (a warm-up longer than the run rises throughout)")
        _check(self, self.clip_grad_norm >= 0, "clip_grad_norm", self.clip_grad_norm,
               "a gradient norm >= 0 (0: no clipping)")
        _check(self, 0 <= self.ema_decay < 1, "ema_decay", self.ema_decay,
               "a decay per step in [0, 1), e.g. 0.99 (0: none)")
        _check(self, self.patience is None or self.patience >= 1, "patience", self.patience, "an integer >= 1")
        _check(self, 0 <= self.num_workers <= _MAX_WORKERS, "num_workers", self.num_workers,
               f"an integer in [0, {_MAX_WORKERS}]")
        _check(self, is_device_name(self.device), "device", self.device, "auto, cpu, cuda or cuda:N")


# Pre-training steps over view pairs drawn afresh (large batches, fewer epochs) with the plain
# loop (the dataclass defaults). Fine-tuning runs over a few thousand complexes (batch 16, as
# ATOM3D trains LBA) with the recipe chosen on the validation split of the demo data (README,
# "Fine-tuning recipe"; docs/results.md): precise BatchNorm removes the validation spikes at
# their cause (running statistics that lag behind the weights), and the learning rate warms up
# for one epoch, then follows a cosine to zero. Weight decay, clipping and weight averaging
# stay available but off: they did not help on validation.
TRAIN_DEFAULTS: dict[RunKind, TrainConfig] = {
    RunKind.pretrain: TrainConfig(num_epochs=10, batch_size=64),
    RunKind.finetune: TrainConfig(num_epochs=20, batch_size=16, schedule=Schedule.cosine, warmup_epochs=1.0,
                                  precise_bn=True),
}


@dataclass(frozen=True)
class NeighborConfig:
    """The neighbor-location pre-training task (`lba_cli.neighbors`).

    Attributes:
        pad_min_A: minimum padding between the two views, in Å.
        pad_max_A: maximum padding, in Å; training padding is pad_min_A + U(0, max - min).
        angle_deg: maximum rotation of the neighbour view about its own centre, in degrees.
        epoch_size: training view pairs per epoch.
        val_size: fixed validation view pairs.
        val_fraction: share of structures held out for validation.
        min_density_per_nm3: minimum atom density (occupancy-weighted heavy atoms per nm³, in
            the sphere inscribed in a view) around both view centres; at least the corpus's.
        curriculum_epochs: ramp the padding noise and angle from zero over this many epochs.
        max_identity: structures with a chain of at least this sequence identity to a
            val/test protein of an ``exclude_similar_to`` file are left out (0.3: the ATOM3D
            LBA split threshold; see `lba_cli.identity`).
        balance_shortcut: keep pairs with probabilities that leave the slab and centroid cues'
            directions uninformative about the label (`lba_cli.neighbors.ShortcutBalance`).
        pilot_pairs: pairs drawn (for training and again for validation conditions) to fit
            the balance; at least 320 (10 per bin).
    """

    pad_min_A: float = field(default=1.0, metadata=option(
        "--pad", "Minimum and maximum padding between the two views, Å.", "Task", part="MIN"))
    pad_max_A: float = field(default=2.0, metadata=option(
        "--pad", "Minimum and maximum padding between the two views, Å.", "Task", part="MAX"))
    angle_deg: float = field(default=20.0, metadata=option(
        "--angle", "Maximum turn of the neighbour view about its centre, degrees.", "Task"))
    epoch_size: int = field(default=2048, metadata=option("--epoch-size", "Training view pairs per epoch.", "Task"))
    val_size: int = field(default=512, metadata=option("--val-size", "Fixed validation view pairs.", "Task"))
    val_fraction: float = field(default=0.1, metadata=option(
        "--val-fraction", "Share of the structures held out for validation.", "Task"))
    min_density_per_nm3: float = field(default=40.0, metadata=option(
        "--min-density", "Minimum atom density around both view centres (occupancy-weighted heavy atoms per nm³ "
        "in a view's inscribed sphere).", "Task"))
    curriculum_epochs: int = field(default=0, metadata=option(
        "--curriculum", "Ramp padding noise and angle from 0 over this many epochs.", "Task"))
    max_identity: float = field(default=0.3, metadata=option(
        "--max-identity", "Sequence identity threshold of --exclude-similar-to (0.3: the ATOM3D LBA split's).",
        "Data"))
    balance_shortcut: bool = field(default=True, metadata=option(
        "--balance-shortcut/--no-balance-shortcut", "Keep pairs so that the empty-side cues (centroid, face slabs) "
        "carry no information about the label.", "Task"))
    pilot_pairs: int = field(default=3000, metadata=option(
        "--pilot-pairs", "Pairs drawn to fit the shortcut balance (for training and for validation pairs).", "Task"))

    def __post_init__(self) -> None:
        _check_own_types(self)
        _check(self, self.pad_min_A >= 0, "pad_min_A", self.pad_min_A, "a padding >= 0 Å")
        _check(self, self.pad_max_A >= self.pad_min_A, "pad_max_A", self.pad_max_A,
               f"a padding >= pad_min_A ({self.pad_min_A} Å)")
        _check(self, 0 <= self.angle_deg <= 180, "angle_deg", self.angle_deg, "an angle in [0, 180] degrees")
        _check(self, self.epoch_size >= 1, "epoch_size", self.epoch_size, "an integer >= 1")
        _check(self, self.val_size >= 1, "val_size", self.val_size, "an integer >= 1")
        _check(self, 0 < self.val_fraction < 1, "val_fraction", self.val_fraction, "a fraction in (0, 1)")
        _check(self, self.min_density_per_nm3 >= 0, "min_density_per_nm3", self.min_density_per_nm3, "a density >= 0")
        _check(self, self.curriculum_epochs >= 0, "curriculum_epochs", self.curriculum_epochs, "an integer >= 0")
        _check(self, 0 < self.max_identity <= 1, "max_identity", self.max_identity, "a sequence identity in (0, 1]")
        _check(self, self.pilot_pairs >= 320, "pilot_pairs", self.pilot_pairs, "an integer >= 320 (10 per bin)")

    @property
    def label(self) -> str:
        """The short label of the task's difficulty, ``min-max-angle`` (e.g. ``1-2-20``)."""
        return "-".join(f"{v:g}" for v in (self.pad_min_A, self.pad_max_A, self.angle_deg))

    @classmethod
    def parse_label(cls, label: str) -> tuple[float, float, float]:
        """``"1-2-20"`` -> (pad_min_A, pad_max_A, angle_deg): the inverse of `label`.

        Raises:
            ConfigError: for text that is not three numbers joined by ``-``.
        """
        try:
            pad_min, pad_max, angle = (float(part) for part in label.split("-"))
        except ValueError:
            raise ConfigError(f"invalid difficulty {label!r}\nexpected: MIN-MAX-ANGLE, e.g. 1-2-20 "
                              "(--pad 1 2 --angle 20)") from None
        return pad_min, pad_max, angle


@dataclass(frozen=True)
class FinetuneConfig:
    """Affinity regression on an `lba voxelize` file (`lba_cli.finetune`).

    Attributes:
        data_path: the HDF5 file written by ``lba voxelize``.
        init: ``random``, the id of the pre-training run whose encoder starts the model, or the
            absolute path of a folder written by ``lba export`` (its encoder, and a fine-tuned
            model's head, start the model).
        freeze: train the head only (encoder BatchNorm in eval mode).
        unfreeze_after: train the head only for this many epochs, then everything.
        encoder_lr_scale: the encoder's learning rate is ``lr`` times this.
        rotate: a fresh uniformly random rotation of each training example every epoch.
        standardize_targets: regress ``(pK - mean) / std`` with the training split's mean and
            std, so that the head starts near the mean and the loss is in units of the spread;
            the model scales its output back (the scale is in its weights), so it predicts pK.
    """

    data_path: str = field(default="", metadata=option(
        "DATA", "HDF5 file written by lba voxelize.", "Data", cli_type=Path,
        existing_file=True))
    init: str = field(default="random", metadata=option(
        "--init", "random; a pre-training run (id, prefix, name or directory) whose encoder starts the model; or a "
                  "folder written by lba export (a fine-tuned model's encoder and head start it).", "Model"))
    freeze: bool = field(default=False, metadata=option(
        "--freeze", "Train the head only (encoder BatchNorm in eval mode).", "Model"))
    unfreeze_after: int | None = field(default=None, metadata=option(
        "--unfreeze-after", "Train the head only for this many epochs, then everything.", "Model"))
    encoder_lr_scale: float = field(default=1.0, metadata=option(
        "--encoder-lr-scale", "Encoder learning rate = --lr times this.", "Optimization"))
    rotate: bool = field(default=True, metadata=option(
        "--rotate/--no-rotate", "A fresh random rotation of every training example each epoch.", "Data"))
    standardize_targets: bool = field(default=True, metadata=option(
        "--standardize-targets/--no-standardize-targets",
        "Regress pK standardised with the training split's mean and std (the model still predicts pK).", "Task"))

    def __post_init__(self) -> None:
        _check_own_types(self)
        _check(self, bool(self.data_path), "data_path", self.data_path, "the path of an lba voxelize HDF5 file")
        _check(self, not (self.freeze and self.init == "random"), "freeze", self.freeze,
               "--freeze only with --init RUN (a frozen random encoder learns nothing)")
        _check(self, self.unfreeze_after is None or self.unfreeze_after >= 1, "unfreeze_after", self.unfreeze_after,
               "an integer >= 1")
        _check(self, not (self.freeze and self.unfreeze_after), "unfreeze_after", self.unfreeze_after,
               "either --freeze (never unfreeze) or --unfreeze-after N, not both")
        _check(self, 0 <= self.encoder_lr_scale <= 100, "encoder_lr_scale", self.encoder_lr_scale,
               "a factor in [0, 100]")

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
    structures: tuple[str, ...] = field(default=(), metadata=option(
        "--structures", "A corpus from lba corpus, or structure files or folders (PDB, mmCIF, PDBQT, .gz; read into "
        "a temporary corpus); repeat for more.", "Data", cli_type=list[Path]))
    exclude_ids: tuple[str, ...] = field(default=(), metadata=option(
        "--exclude-ids", "File of structure ids to leave out (e.g. downstream val/test proteins).", "Data",
        cli_type=Path, existing_file=True, parse=read_exclude_ids))
    exclude_similar_to: tuple[str, ...] = field(default=(), metadata=option(
        "--exclude-similar-to", "lba voxelize file whose val and test proteins must not be pre-trained on: structures "
        "with a chain of --max-identity or more sequence identity to one are left out (repeatable).", "Data",
        cli_type=list[Path], existing_file=True))
    name: str | None = field(default=None, metadata=option(
        "--name", "A human name for the run (ids stay the key).", "System"))

    def __post_init__(self) -> None:
        _check_own_types(self)
        object.__setattr__(self, "kind", RunKind(self.kind))
        _check(self,
               self.name is None or (self.name.strip() and self.name != "random" and not _RUN_ID.match(self.name)),
               "name", self.name, "a human name that is not 'random' and does not look like a run id")
        if self.kind is RunKind.pretrain:
            _check(self, self.neighbor is not None and bool(self.structures), "structures", self.structures,
                   "pre-training needs --structures and a neighbor task")
        else:
            _check(self, self.finetune is not None, "finetune", self.finetune, "fine-tuning needs a data file")


# Each section of a RunConfig (None: the top level) and its class.
SECTIONS: dict[str | None, type] = {"grid": GridConfig, "model": ModelConfig, "train": TrainConfig,
                                    "neighbor": NeighborConfig, "finetune": FinetuneConfig, None: RunConfig}


def config_to_dict(config: Any) -> Any:
    """Turn a (nested) config dataclass into JSON-ready dicts, lists and scalars."""
    if dataclasses.is_dataclass(config):
        return {f.name: config_to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, Enum):
        return config.value
    if isinstance(config, (tuple, list)):
        return [config_to_dict(v) for v in config]
    return config


_NESTED = {name: cls for name, cls in SECTIONS.items() if name is not None}


def _tuplify(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuplify(v) for v in value)
    return value


def _build(cls: type, data: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}\n"
                          f"expected: {', '.join(sorted(names))}")
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
    """Rebuild a `RunConfig` from a run's ``config.json`` (ignores the provenance fields).

    Fields that did not exist when the run was recorded take the values of `LEGACY_DEFAULTS`,
    which reproduce how the run was trained (so an old run resumes as it started). Runs recorded
    before ``model.pair_head`` existed used the pooled pair head, and are rebuilt with it (so
    their checkpoints still load).
    """
    data = {k: v for k, v in data.items() if k not in _PROVENANCE}
    for section, fields in LEGACY_DEFAULTS.items():
        if isinstance(data.get(section), dict):
            data[section] = {**fields, **data[section]}
    if isinstance(data.get("model"), dict) and "pair_head" not in data["model"]:
        data["model"] = {**data["model"], "pair_head": "pooled"}
    return config_from_dict(data)


_PROVENANCE = ("lba_version", "git_sha")
# Fields added after runs were recorded without them, with the values that reproduce those runs:
# the plain Adam loop on raw pK.
LEGACY_DEFAULTS: dict[str, dict[str, Any]] = {
    "train": {"schedule": "constant", "warmup_epochs": 0.0, "clip_grad_norm": 0.0, "ema_decay": 0.0,
              "precise_bn": False},
    "finetune": {"standardize_targets": False},
}


_SECTIONS = ("grid", "model", "train", "neighbor", "finetune")
_TOP_LEVEL = ("name", "structures", "exclude_ids", "exclude_similar_to")


def _read_toml(path: Path) -> dict[str, Any]:
    import tomllib

    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"cannot read config file {path}: not UTF-8 text\nexpected: a TOML file") from None
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
            ``exclude_ids``, ``exclude_similar_to`` (see `config_to_toml`), or None.
        overrides: the same layout from the command line; ``None`` values mean "not given".

    Raises:
        ConfigError: on unknown keys or invalid values, naming the field.
    """
    kind = RunKind(kind)
    data = _read_toml(config_file) if config_file is not None else {}
    for section in _SECTIONS:
        if section in data and not isinstance(data[section], dict):
            raise ConfigError(f"{config_file}: {section} = {data[section]!r}\nexpected: a table [{section}]")
        check_types(SECTIONS[section], data.get(section) or {}, f" in {config_file} [{section}]")
    check_types(RunConfig, {k: data[k] for k in _TOP_LEVEL if k in data}, f" in {config_file}")
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
    train = dataclasses.replace(TRAIN_DEFAULTS[kind], **{k: _tuplify(v) for k, v in _checked(TrainConfig,
                                                                                             merged["train"]).items()})
    task: dict[str, Any] = {}
    if kind is RunKind.pretrain:
        task["neighbor"] = _build(NeighborConfig, merged["neighbor"])
    else:
        task["finetune"] = _build(FinetuneConfig, merged["finetune"])
    return RunConfig(
        kind=kind, grid=_build(GridConfig, merged["grid"]), model=_build(ModelConfig, merged["model"]), train=train,
        structures=tuple(str(p) for p in merged["structures"] or ()),
        exclude_ids=tuple(merged["exclude_ids"] or ()),
        exclude_similar_to=tuple(str(p) for p in merged["exclude_similar_to"] or ()), name=merged["name"], **task,
    )


def _checked(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}\n"
                          f"expected: {', '.join(sorted(names))}")
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
