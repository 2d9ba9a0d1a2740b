"""The `fgvu` command line. Each command group lives in `fgvu.commands.<name>`."""

from __future__ import annotations

import importlib
import importlib.metadata
import sys

import typer

import fgvu
from fgvu.errors import STORAGE_ERRNOS, FgvuError, storage_error

app = typer.Typer(
    help="fgvu: fine-grained video understanding with frozen multimodal encoders and light fusion heads.\n\n"
    "Stage 1 `fgvu extract` runs the frozen encoders once into a Zarr cache; stage 2 `fgvu fit` trains "
    "the fusion head on that cache.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

COMMAND_MODULES = (
    "fgvu.commands.extract",
    "fgvu.commands.fit",
    "fgvu.commands.evaluate",
    "fgvu.commands.infer",
    "fgvu.commands.score",
    "fgvu.commands.cv",
    "fgvu.commands.ablations",
    "fgvu.commands.cache",
    "fgvu.commands.synth",
    "fgvu.commands.convert",
    "fgvu.commands.demo",
)
for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(app)


def version() -> str:
    """The installed package's version, else `fgvu.__version__` (a source tree that is not installed)."""
    try:
        return importlib.metadata.version("fgvu")
    except importlib.metadata.PackageNotFoundError:
        return fgvu.__version__


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"fgvu {version()}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                      help="Print fgvu's version and exit."),
) -> None:
    # the options of `fgvu` itself, before the command; the help text is the app's
    pass


def main() -> None:
    """Entry point: user errors, and storage errors such as a full disk, print one clear line and
    exit 2, without a traceback."""
    try:
        app()
    except FgvuError as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except OSError as e:
        if e.errno not in STORAGE_ERRNOS:
            raise  # anything else is a bug, which its traceback helps to find
        error = storage_error(e, ".", "run the command again")
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
