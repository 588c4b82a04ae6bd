"""`lba voxelize`."""

from __future__ import annotations

import contextlib
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from lba_cli.cli.common import Quiet, Seed, friendly_errors, stderr, stdout


class FormatChoice(str, Enum):
    auto = "auto"
    atom3d = "atom3d"
    pdbbind = "pdbbind"


class SplitChoice(str, Enum):
    predefined = "predefined"
    protein = "protein"
    random = "random"


@friendly_errors
def voxelize(
    sources: Annotated[list[Path], typer.Argument(help="ATOM3D LBA folder(s) or PDBbind folder(s).", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="HDF5 file to write.", dir_okay=False,
                                         rich_help_panel="Data")],
    fmt: Annotated[FormatChoice, typer.Option("--format", help="Layout of the sources.", rich_help_panel="Data")] = FormatChoice.auto,
    box_size: Annotated[Optional[int], typer.Option("--box-size", help="Voxels per side [default: 21].", rich_help_panel="Grid", show_default=False)] = None,
    resolution: Annotated[Optional[float], typer.Option("--resolution", help="Voxel edge, Å [default: 1.0].", rich_help_panel="Grid", show_default=False)] = None,
    radius: Annotated[Optional[float], typer.Option("--radius", help="Atom sphere radius, Å [default: 0.5].", rich_help_panel="Grid", show_default=False)] = None,
    channels: Annotated[Optional[str], typer.Option("--channels", help='Element groups [default: "C;N;O;P;S,SE;*"].', rich_help_panel="Grid", show_default=False)] = None,
    protein_channel: Annotated[Optional[bool], typer.Option("--protein-channel/--no-protein-channel", help="Add a channel flagging protein atoms [default: on].", rich_help_panel="Grid", show_default=False)] = None,
    keep_hydrogens: Annotated[Optional[bool], typer.Option("--keep-hydrogens", help="Keep H and D atoms.", rich_help_panel="Grid", show_default=False)] = None,
    keep_water: Annotated[Optional[bool], typer.Option("--keep-water", help="Keep waters.", rich_help_panel="Grid", show_default=False)] = None,
    split: Annotated[Optional[SplitChoice], typer.Option("--split", help="predefined (the source's), protein (whole proteins per split) or random [default: predefined if the source has splits, else protein].", rich_help_panel="Data", show_default=False)] = None,
    seed: Seed = None,
    report: Annotated[Optional[Path], typer.Option("--report", help="Write skipped complexes to this CSV.", dir_okay=False, rich_help_panel="Data")] = None,
    quiet: Quiet = False,
) -> None:
    """Read complexes, voxelize them and write one HDF5 file.

    Example: [bold]lba voxelize ../shared/data/atom3d_lba_demo/split-by-protein -o demo.h5[/]
    """
    from lba_cli.config import GridConfig
    from lba_cli.data.build import build_dataset, write_skip_report
    from lba_cli.data.sources import SourceFormat
    from lba_cli.data.splits import SplitKind

    options = {"box_size_voxels": box_size, "resolution_A": resolution, "radius_A": radius, "channels": channels,
               "protein_channel": protein_channel, "keep_hydrogens": keep_hydrogens, "keep_water": keep_water}
    grid = GridConfig(**{k: v for k, v in options.items() if v is not None})
    live = not quiet and stderr.is_terminal
    with stderr.status("reading complexes") if live else contextlib.nullcontext() as status:
        counter = {"n": 0}

        def seen(complex_id: str) -> None:
            counter["n"] += 1
            if status is not None:
                status.update(f"reading complexes: {counter['n']} ({complex_id})")

        result = build_dataset(sources, output, grid, fmt=SourceFormat(fmt.value),
                               split=SplitKind(split.value) if split else None, seed=seed or 0, on_complex=seen)
    for item in result.skipped:
        stderr.print(f"[yellow]skipped[/] {item.complex_id} ({item.stage}): {item.reason}", highlight=False, soft_wrap=True)
    if report is not None:
        write_skip_report(report, result.skipped)
    counts = ", ".join(f"{split} {n}" for split, n in result.counts.items())
    leaks = sum(result.leakage.values())
    stdout.print(f"wrote {result.output}: {result.num_written} complexes ({counts}); {len(result.skipped)} skipped; "
                 f"{len(result.notes)} read with notes", highlight=False, soft_wrap=True)
    stdout.print("leakage check: proteins shared between splits: "
                 + ", ".join(f"{k} {v}" for k, v in result.leakage.items())
                 + (" [red](leaky split)[/]" if leaks else ""), highlight=False, soft_wrap=True)
