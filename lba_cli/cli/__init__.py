"""The `lba` command line: a Typer app whose commands are thin wrappers over the core.

Each command builds a config, calls one core function and renders the result. Results go
to stdout; progress, messages and errors go to stderr. A user mistake (`LbaError`) prints a
red message and exits with code 1; usage errors exit with 2 (Typer); anything else is a bug
and shows a traceback. Heavy libraries (torch, polars, plotnine) are imported inside the
commands, so ``lba --help`` stays fast.
"""

from __future__ import annotations

import typer

from lba_cli import __version__
from lba_cli.cli import data_commands, model_commands, result_commands, run_commands, train_commands

__all__ = ["app", "main"]

app = typer.Typer(
    name="lba",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
    help="Protein-ligand binding affinity with voxel 3D CNNs: voxelize -> pretrain -> finetune -> evaluate -> "
         "plot / compare; predict and export to use a trained model.\n\n"
         "Exit codes: 0 ok, 1 error (bad input or data), 2 usage error.",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lba {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Show the version and exit."),
) -> None:
    """Root options."""


app.command("download")(data_commands.download)
app.command("voxelize")(data_commands.voxelize)
app.command("corpus")(data_commands.corpus)
app.command("pretrain")(train_commands.pretrain)
app.command("finetune")(train_commands.finetune)
app.command("sweep")(train_commands.sweep)
app.command("evaluate")(result_commands.evaluate)
app.command("plot")(result_commands.plot)
app.command("compare")(result_commands.compare)
app.command("predict")(model_commands.predict)
app.command("export")(model_commands.export)
app.add_typer(run_commands.runs_app, name="runs")


def main() -> None:
    """Console-script entry point."""
    app()
