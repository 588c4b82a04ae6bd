"""`lba predict` and `lba export`: using a trained model."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from lba_cli.choices import LabelUnit, SourceFormat
from lba_cli.cli.common import (
    OutputFormat,
    Quiet,
    RunsDir,
    friendly_errors,
    print_reading_report,
    render_frame,
    stderr,
    stdout,
    store_from,
)
from lba_cli.cli.options import Finetune


class Checkpoint(str, Enum):
    best = "best"
    last = "last"


@friendly_errors
def predict(
    models_and_sources: Annotated[list[str], typer.Argument(
        help="Models first (fine-tuning runs: id, prefix, name or directory; folders written by lba export), then "
             "the complexes as lba voxelize takes them: ATOM3D or PDBbind folders, folders of <id>/ subfolders, "
             "CSV manifests (affinity optional), or PROTEIN LIGANDS.sdf.", metavar="RUN... SOURCES...",
        show_default=False)],
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="Predictions file, .csv or .json (default: a table on stdout).", dir_okay=False,
        show_default=False)] = None,
    group: Annotated[Optional[str], typer.Option(
        "--group", help="Add the runs of a replicate group (their group:NAME tag, or any tag they share).",
        show_default=False)] = None,
    fmt: Annotated[SourceFormat, typer.Option("--format", help="Layout of the sources.",
                                              rich_help_panel="Data")] = SourceFormat.auto,
    label_field: Annotated[Optional[str], typer.Option(
        "--label-field", help="SDF property holding a measured affinity, if the series has one (sdf-series).",
        rich_help_panel="Data", show_default=False)] = None,
    label_unit: Annotated[LabelUnit, typer.Option("--label-unit", help="Unit of --label-field.",
                                                  rich_help_panel="Data")] = LabelUnit.pk,
    tta: Annotated[int, typer.Option(
        "--tta", help="Average each model over N uniformly random rotations of each complex (0: its own "
                      "orientation).", min=0)] = 0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the --tta rotations.")] = 0,
    sdf: Annotated[Optional[Path], typer.Option(
        "--sdf", help="For a series: its SDF again with lba_predicted_pk, lba_predicted_pk_std and lba_n_models on "
                      "every record (default: beside -o, with .sdf).", dir_okay=False, show_default=False)] = None,
    labels: Annotated[Optional[Path], typer.Option(
        "--labels", help="Label table of a folder of <id>/ subfolders (measured affinities, optional; default: the one "
                         "CSV in the folder).", exists=True, dir_okay=False, rich_help_panel="Data",
        show_default=False)] = None,
    report: Annotated[Optional[Path], typer.Option("--report", help="Write skipped complexes to this CSV (also when "
                                                                    "none could be read).",
                                                   dir_okay=False, show_default=False)] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Complexes per forward pass.", min=1)] = 32,
    device: Finetune("--device") = None,
    runs_dir: RunsDir = None,
    quiet: Quiet = False,
) -> None:
    """Predict pK of new complexes with one model or an ensemble (mean and std over the models).

    Example: [bold]lba predict rand-s0 rand-s1 rand-s2 protein.pdb ligands.sdf -o predictions.csv[/]
    (or: lba predict --group 20261130-101500-ab12 manifest.csv --tta 8 -o predictions.json;
    lba predict exported_model/ protein.pdb ligands.sdf -o predictions.csv)
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from lba_cli.predict import (
        predict_complexes,
        resolve_predictors,
        split_models_and_sources,
        write_predictions_table,
        write_series_sdf,
    )

    store = store_from(runs_dir)
    refs, sources = split_models_and_sources(models_and_sources)
    if not sources:
        raise typer.BadParameter("give the complexes to predict after the models (e.g. PROTEIN LIGANDS.sdf or "
                                 "manifest.csv)", param_hint="SOURCES")
    predictors = resolve_predictors(store, refs, group)
    stderr.print(f"models: {', '.join(p.label for p in predictors)}", highlight=False, markup=False)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=stderr, disable=quiet or not stderr.is_terminal, transient=True) as progress:
        reading = progress.add_task("reading complexes", total=None)
        task = progress.add_task("predicting", total=None, visible=False)

        def started(total: int) -> None:
            progress.update(reading, visible=False)
            progress.update(task, total=total, visible=True)

        result = predict_complexes(
            predictors, sources, fmt=fmt, label_field=label_field, label_unit=label_unit, labels=labels,
            report=report, num_rotations=tta,
            seed=seed, device=device or "auto", batch_size=batch_size, on_start=started,
            on_complex=lambda complex_id: progress.update(reading, advance=1,
                                                          description=f"reading complexes ({escape(complex_id)})"),
            on_batch=lambda done: progress.advance(task, done))
    print_reading_report(result.messages, result.notes, result.skipped)
    if output is not None:
        write_predictions_table(result.frame, output)
    else:
        render_frame(result.frame.drop("source"), OutputFormat.table, title="predicted pK")
    sdf_path = sdf or (output.with_suffix(".sdf") if output is not None else None)
    if result.series_sdfs and sdf_path is not None:
        written = write_series_sdf(result.series_sdfs[0], result.frame, result.skipped, sdf_path)
        stderr.print(f"wrote {sdf_path}: {written} records with lba_predicted_pk", highlight=False, markup=False)
    elif sdf is not None:
        stderr.print("[yellow]note:[/] --sdf applies to a series (PROTEIN LIGANDS.sdf); no SDF written",
                     highlight=False)
    summary = (f"{result.frame.height} complexes predicted by {len(predictors)} model(s)"
               + (f" x {tta} rotations" if tta else "") + f"; {len(result.skipped)} skipped")
    if output is not None:
        stdout.print(f"wrote {output}: {summary}", highlight=False, markup=False)
    else:
        stderr.print(summary, highlight=False, markup=False)


@friendly_errors
def export(
    run: Annotated[str, typer.Argument(help="Run id, prefix, name or directory.", show_default=False)],
    directory: Annotated[Path, typer.Argument(help="New folder for the exported model.", file_okay=False,
                                              show_default=False)],
    checkpoint: Annotated[Checkpoint, typer.Option("--checkpoint",
                                                   help="Which checkpoint to export.")] = Checkpoint.best,
    runs_dir: RunsDir = None,
) -> None:
    """Export a run as a folder: safetensors weights, config, target scaling and a model card (README.md).

    Example: [bold]lba export rand-s0 models/rand-s0[/]  (then: lba predict models/rand-s0 PROTEIN LIGANDS.sdf, or
    lba finetune DATA.h5 --init models/rand-s0)
    """
    from lba_cli.export import export_run

    result = export_run(store_from(runs_dir), run, directory, checkpoint.value)
    manifest = result.manifest
    data = manifest.get("training_data") or {}
    if manifest["run"]["kind"] == "finetune" and not data.get("sha256"):
        stderr.print(f"[yellow]warning:[/] training data {escape(str(data.get('path')))} not found: the model card "
                     "gives no hash or split sizes", highlight=False)
    stderr.print(f"exported run {manifest['run']['id']} ({manifest['parameters']:,} parameters)", highlight=False)
    stdout.print(str(result.path), highlight=False, markup=False)
