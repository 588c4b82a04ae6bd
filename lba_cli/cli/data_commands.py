"""`lba voxelize` and `lba corpus`."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from lba_cli.choices import LabelUnit, SourceFormat, SplitKind
from lba_cli.cli.common import Quiet, friendly_errors, print_reading_report, reading_status, stderr, stdout
from lba_cli.cli.options import ConfigOptions, config_overrides

Grid = ConfigOptions()  # voxelize builds a GridConfig only


@friendly_errors
def voxelize(
    sources: Annotated[list[Path],
                       typer.Argument(help="ATOM3D LBA folders, PDBbind folders, folders of <id>/ subfolders "
                                           "with a label table, CSV manifests, or PROTEIN LIGANDS.sdf (a series).",
                                      show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="HDF5 file to write.", dir_okay=False,
                                         rich_help_panel="Data")],
    fmt: Annotated[SourceFormat, typer.Option("--format", help="Layout of the sources.",
                                              rich_help_panel="Data")] = SourceFormat.auto,
    box_size: Grid("--box-size") = None,
    resolution: Grid("--resolution") = None,
    radius: Grid("--radius") = None,
    channels: Grid("--channels") = None,
    protein_channel: Grid("--protein-channel") = None,
    keep_hydrogens: Grid("--keep-hydrogens") = None,
    keep_water: Grid("--keep-water") = None,
    split: Annotated[Optional[SplitKind], typer.Option("--split",
                                                       help="predefined (the source's), protein (whole proteins per "
                                                            "split) or random (default: predefined if the source has "
                                                            "splits, else protein).", rich_help_panel="Data",
                                                                show_default=False)] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed of the protein or random split (default: 0).",
                                                rich_help_panel="Data", show_default=False)] = None,
    label_field: Annotated[Optional[str], typer.Option("--label-field",
                                                       help="SDF property holding the affinity (sdf-series).",
                                                           rich_help_panel="Data", show_default=False)] = None,
    label_unit: Annotated[LabelUnit, typer.Option("--label-unit",
                                                  help="Unit of --label-field (kcal/mol and kJ/mol: ΔG at 298.15 K).",
                                                      rich_help_panel="Data")] = LabelUnit.pk,
    labels: Annotated[Optional[Path], typer.Option("--labels",
                                                   help="Label table of a folder of <id>/ subfolders (an id column "
                                                        "and a pK or Kd/Ki column; default: the one CSV in the "
                                                        "folder).", exists=True, dir_okay=False,
                                                   rich_help_panel="Data", show_default=False)] = None,
    report: Annotated[Optional[Path], typer.Option("--report", help="Write skipped complexes to this CSV (also when "
                                                                    "none could be read).",
                                                   dir_okay=False, rich_help_panel="Data")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace OUTPUT if it exists (runs trained on it will "
                                                        "then refuse it: they recorded its SHA-256).",
                                        rich_help_panel="Data")] = False,
    quiet: Quiet = False,
) -> None:
    """Read complexes, voxelize them and write one HDF5 file.

    Affinities become pK = -log10(K / M): Kd, Ki, IC50 or EC50, fM..M,
    with =, <, >, <=, >= or ~ (kept beside the pK).
    A range K=a-b or K=a..(n)..b: its geometric mean, pK = (pK(a) + pK(b)) / 2.
    Several measurements joined by ':': one kind is kept, Kd over Ki over IC50
    over EC50, and several values of that kind are averaged in pK.
    Each complex read this way carries a note that says so.

    Example: [bold]lba voxelize ../shared/data/atom3d_lba_demo/split-by-protein -o demo.h5[/]
    (or: lba voxelize protein.pdb series.sdf --format sdf-series --label-field dG --label-unit kcal/mol -o series.h5;
    lba voxelize complexes/ --labels complexes/labels.csv -o mine.h5)
    """
    from lba_cli.config import GridConfig
    from lba_cli.data.build import build_dataset

    grid = GridConfig(**config_overrides(voxelize, locals()).get("grid", {}))
    with reading_status(quiet) as seen:
        result = build_dataset(sources, output, grid, fmt=fmt, split=split, seed=seed or 0, on_complex=seen,
                               label_field=label_field, label_unit=label_unit, labels=labels, report=report,
                               overwrite=force)
    print_reading_report(result.messages, result.notes, result.skipped)
    counts = ", ".join(f"{split} {n}" for split, n in result.counts.items())
    # short lines: one each on a 100-column terminal; a narrower one wraps them between words
    stdout.print(f"wrote {result.output}: {result.num_written} complexes; {len(result.skipped)} skipped; "
                 f"{len(result.notes)} read with notes", highlight=False, markup=False)
    stdout.print(f"split {result.split_kind}: {counts}", highlight=False, markup=False)
    for warning in result.warnings:
        stderr.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    proteins = ", ".join(f"{k} {v}" for k, v in result.leakage.items())
    ligands = ", ".join(f"{k} {v}" for k, v in result.ligand_leakage.items())
    unknown = (f" [yellow](incomplete: {result.unknown_proteins} complexes have no protein identity)[/]"
               if result.unknown_proteins else "")
    leaky = " [red](leaky split)[/]" if sum(result.leakage.values()) else ""
    stdout.print(f"leakage check: proteins shared between splits: {proteins}{leaky}{unknown}", highlight=False)
    stdout.print(f"leakage check: ligands (same SMILES) shared between splits: {ligands}", highlight=False)


@friendly_errors
def corpus(
    sources: Annotated[list[Path],
                       typer.Argument(help="Structure files or folders (PDB, mmCIF, PDBQT, .gz), or lba voxelize "
                                           "files of whole proteins (training split only).", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Corpus HDF5 file to write.", dir_okay=False,
                                         rich_help_panel="Data")],
    min_density: Annotated[Optional[float], typer.Option(
        "--min-density", help="Atoms per nm³ (occupancy-weighted heavy atoms in a view's inscribed sphere) needed at "
                              "home and neighbour centres (default: 40).", rich_help_panel="Zones",
        show_default=False)] = None,
    max_pad: Annotated[Optional[float], typer.Option(
        "--max-pad", help="Largest padding, Å, that runs on this corpus may use (default: 6).",
        rich_help_panel="Zones", show_default=False)] = None,
    box_size: Grid("--box-size") = None,
    resolution: Grid("--resolution") = None,
    workers: Annotated[Optional[int], typer.Option("--workers", help="Reading processes (default: all CPUs).",
                                                   rich_help_panel="System", show_default=False)] = None,
    report: Annotated[Optional[Path], typer.Option("--report", help="Write the structures left out to this CSV "
                                                                    "(source, reason; also when none has a zone).",
                                                   dir_okay=False,
                                                   rich_help_panel="Data")] = None,
    quiet: Quiet = False,
) -> None:
    """Read pre-training structures, find their dense zones and write one corpus file.

    Example: [bold]lba corpus ../shared/data/proteins_bm5 -o bm5.h5[/] (then: lba pretrain --structures bm5.h5)
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from lba_cli.config import GridConfig
    from lba_cli.corpus import build_corpus
    from lba_cli.zones import ZoneSettings

    grid = GridConfig(**config_overrides(corpus, locals()).get("grid", {}))
    zone_options = {"max_pad_A": max_pad, "min_density_per_nm3": min_density}
    settings = ZoneSettings(view_size_A=grid.box_size_A, **{k: v for k, v in zone_options.items() if v is not None})
    with Progress(TextColumn("[bold]corpus"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  TextColumn("{task.description}"), console=stderr,
                  disable=quiet or not stderr.is_terminal) as progress:
        task = progress.add_task("", total=None)

        def seen(done: int, total: int, source: str) -> None:
            progress.update(task, completed=done, total=total, description=escape(Path(source).name))

        result = build_corpus(sources, output, settings, workers=workers, on_structure=seen, report=report)
    shown = 20
    for source, reason in result.skipped[:shown]:
        stderr.print(f"[yellow]left out[/] {escape(str(source))}: {escape(reason)}", highlight=False)
    if len(result.skipped) > shown:
        where = f" (all in {escape(str(report))})" if report is not None else " (--report FILE.csv lists them all)"
        stderr.print(f"[yellow]... and {len(result.skipped) - shown} more[/]" + where,
                     highlight=False)
    rate = (result.num_structures + len(result.skipped)) / max(result.elapsed_s, 1e-9)
    stdout.print(f"wrote {result.output}: {result.num_structures} structures, {result.num_zones} zones, "
                 f"{result.num_atoms} atoms; {len(result.skipped)} left out", highlight=False, markup=False)
    stdout.print(f"read in {result.elapsed_s:.1f} s ({rate:.1f} structures/s)", highlight=False)


class Dataset(str, Enum):
    atom3d_lba = "atom3d-lba"


@friendly_errors
def download(
    dataset: Annotated[Dataset, typer.Argument(help="What to fetch.")],
    split: Annotated[str, typer.Option("--split", help="Sequence-identity split: 30 or 60.")] = "30",
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the archive and its contents.",
                                         file_okay=False)] = Path("data"),
    record_url: Annotated[str, typer.Option("--record-url", help="Zenodo record API URL (or a mirror answering the "
                                                                 "same JSON).")] = "",
    quiet: Quiet = False,
) -> None:
    """Download, verify (MD5) and unpack the ATOM3D LBA archive; an interrupted download resumes.

    Example: [bold]lba download atom3d-lba --split 30 -o data[/]
    """
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    from lba_cli.download import ATOM3D_RECORD_URL, download_atom3d_lba

    with Progress(TextColumn("[bold]download"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn(), console=stderr, disable=quiet or not stderr.is_terminal) as progress:
        task = progress.add_task("download", total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total or None)

        root = download_atom3d_lba(split, output, record_url or ATOM3D_RECORD_URL, update)
    stdout.print(str(root), highlight=False, markup=False)
    stderr.print(f"next: lba voxelize {root} -o lba_{split}.h5", highlight=False, markup=False)
