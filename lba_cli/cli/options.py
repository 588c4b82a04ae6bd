"""Command-line options derived from the config fields, so that each is defined once.

A config field's `lba_cli.config.CliOption` holds its flag, help and panel, and the field
holds its default. `ConfigOptions` turns them into Typer parameters for one command (with
that command's defaults, e.g. batch size 64 for pretrain, 16 for finetune), and
`config_overrides` collects the values a command received into the layout
`lba_cli.config.build_run_config` takes. So a command declares a config option in one line:

    batch_size: Pretrain("--batch-size") = None

Options that are not config fields (--runs-dir, --quiet, --format, ...) are the `Annotated`
aliases of `lba_cli.cli.common`.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Optional

import typer

from lba_cli.choices import RunKind
from lba_cli.config import SECTIONS, TRAIN_DEFAULTS, CliOption, TrainConfig, format_channels

__all__ = ["ConfigField", "ConfigOptions", "config_overrides", "Pretrain", "Finetune"]


@dataclass(frozen=True)
class ConfigField:
    """What a command-line parameter sets: fields ``names`` of ``section`` (None: the top
    level) of the configs named in ``targets`` (``pretrain``, ``finetune``)."""

    targets: tuple[str, ...]
    section: str | None
    names: tuple[str, ...]
    option: CliOption

    def values(self, value: Any) -> dict[str, Any]:
        """Field name -> field value for one command-line value (a tuple for ``--pad MIN MAX``)."""
        if len(self.names) == 1:
            return {self.names[0]: self.option.to_field(value)}
        return {name: self.option.to_field(part) for name, part in zip(self.names, value)}


@functools.cache
def _fields_by_flag() -> dict[str, tuple[str | None, tuple[dataclasses.Field, ...]]]:
    """Flag (``--pad``, ``--protein-channel``, ``DATA``) -> (section, the fields it sets)."""
    found: dict[str, tuple[str | None, tuple[dataclasses.Field, ...]]] = {}
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            cli = f.metadata.get("cli")
            if cli is not None:
                flag = cli.flag.split("/")[0]
                found[flag] = (section, found.get(flag, (section, ()))[1] + (f,))
    return found


def _cli_type(cls: type, f: dataclasses.Field) -> Any:
    """The Typer type of a field's value: `CliOption.cli_type`, else the field's type without
    None, with ``tuple[X, ...]`` as ``list[X]`` (a repeated option)."""
    cli = f.metadata["cli"]
    if cli.cli_type is not None:
        return cli.cli_type
    hint = typing.get_type_hints(cls)[f.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
        hint = args[0]
    if typing.get_origin(hint) is tuple:
        return list[typing.get_args(hint)[0]]
    return hint


def _default_text(cli: CliOption, values: list[Any]) -> str | None:
    """How ``--help`` shows a default: the field's value, or `CliOption.default_text`."""
    if cli.default_text is not None:
        return cli.default_text
    if any(v is None for v in values) or values in ([()], [""]):
        return None
    if len(values) == 1 and isinstance(values[0], bool):
        if "/" in cli.flag:
            return "on" if values[0] else "off"
        return None  # a flag's absence is its default
    return " ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


class ConfigOptions:
    """Typer parameters for the config fields of one command, by flag: ``Pretrain("--lr")``.

    Args:
        kind: the run kind whose defaults ``--help`` shows (`lba_cli.config.TRAIN_DEFAULTS`);
            None for commands that build no run (voxelize: grid fields only).
        targets: the configs the values go to (default: the kind's).
        prefix: put before every flag and help (``prefix="pretrain"``: ``--pretrain-epochs``,
            "Pre-training: ..."), for a command that sets two configs (sweep).
    """

    def __init__(self, kind: RunKind | None = None, *, targets: tuple[str, ...] | None = None,
                 prefix: str = "") -> None:
        self.kind = kind
        self.targets = targets if targets is not None else ((kind.value,) if kind else ())
        self.prefix = prefix

    @functools.cache  # noqa: B019 - a few instances, alive for the whole process
    def __call__(self, flag: str, *, as_option: str | None = None, required: bool = False) -> Any:
        """The ``Annotated`` type of the parameter for the config field(s) that ``flag`` names.

        Args:
            flag: the field's flag (``--pad``; ``DATA`` for an argument).
            as_option: give an argument field as this option instead (``--data``).
            required: the command cannot run without it (a Typer usage error otherwise).

        Raises:
            KeyError: for a flag that no config field has.
        """
        try:
            section, fields = _fields_by_flag()[flag]
        except KeyError:
            raise KeyError(f"no config field has the flag {flag!r}; add its metadata in lba_cli/config.py") from None
        cls = SECTIONS[section]
        cli: CliOption = fields[0].metadata["cli"]
        defaults = TRAIN_DEFAULTS[self.kind] if (cls is TrainConfig and self.kind) else None
        values = [getattr(defaults, f.name) if defaults else _field_default(f) for f in fields]
        value_type = _cli_type(cls, fields[0])
        if len(fields) > 1:
            value_type = tuple[(value_type,) * len(fields)]
        text = _default_text(cli, [format_channels(v) if f.name == "channels" else v for f, v in zip(fields, values)])
        title = {"pretrain": "Pre-training", "finetune": "Fine-tuning"}.get(self.prefix, self.prefix.capitalize())
        help_text = (f"{title}: {cli.help[0].lower()}{cli.help[1:]}" if title else cli.help) + (
            f" (default: {text})" if text else "")
        paths = {"exists": True, "dir_okay": False} if cli.existing_file else {}
        metavar = " ".join(f.metadata["cli"].part for f in fields) if len(fields) > 1 else None
        name = as_option or cli.flag
        if not name.startswith("-"):
            info = typer.Argument(help=help_text, metavar=name, show_default=False, **paths)
        else:
            if self.prefix:
                name = "/".join(f"--{self.prefix}-{part.lstrip('-')}" for part in name.split("/"))
            info = typer.Option(*name.split(" "), help=help_text, rich_help_panel=cli.panel, show_default=False,
                                metavar=metavar, **paths)
        marker = ConfigField(self.targets, section, tuple(f.name for f in fields), cli)
        return Annotated[value_type if required else Optional[value_type], info, marker]


def _field_default(f: dataclasses.Field) -> Any:
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def config_overrides(command: Any, values: dict[str, Any], target: str | None = None) -> dict[str, Any]:
    """The config values a command received, in `lba_cli.config.build_run_config`'s layout.

    Args:
        command: the command function (its parameters' ``ConfigField`` markers say where
            each value goes).
        values: its parameters' values (``locals()`` at the top of its body).
        target: only parameters for this config (``pretrain`` or ``finetune``); None: all.

    Returns:
        ``{"train": {"lr": 0.01}, "name": "p1", ...}``; parameters not given (None) are left
        out, so that defaults and the ``--config`` file apply.
    """
    overrides: dict[str, Any] = {}
    for parameter, hint in typing.get_type_hints(command, include_extras=True).items():
        marker = next((m for m in getattr(hint, "__metadata__", ()) if isinstance(m, ConfigField)), None)
        if marker is None or values.get(parameter) is None or (target is not None and target not in marker.targets):
            continue
        fields = marker.values(values[parameter])
        if marker.section is None:
            overrides.update(fields)
        else:
            overrides.setdefault(marker.section, {}).update(fields)
    return overrides


Pretrain = ConfigOptions(RunKind.pretrain)
Finetune = ConfigOptions(RunKind.finetune)
