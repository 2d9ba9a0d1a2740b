"""`fgvu cache info|verify|export`: inspect, check and convert feature caches."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from fgvu.commands.common import option

cache_app = typer.Typer(help="Inspect, verify and export feature caches.", no_args_is_help=True)


@cache_app.command("info")
def info_cmd(
    cache: Path = typer.Argument(..., help="Cache directory (holds cache.json)."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
) -> None:
    """Videos per split, windows, frames, dims, encoders, failures and size on disk."""
    from fgvu.cache.tools import cache_info, info_lines

    info = cache_info(cache)
    typer.echo(json.dumps(info, indent=1) if as_json else "\n".join(info_lines(info)))


@cache_app.command("verify")
def verify_cmd(cache: Path = typer.Argument(..., help="Cache directory (holds cache.json).")) -> None:
    """Check every committed row: readable, finite, indices in range, offsets consistent. Exit 1 on problems."""
    from fgvu.cache.verify import verify_cache

    problems = verify_cache(cache)
    if problems:
        typer.echo(f"cache {cache}: {len(problems)} problem(s):")
        for problem in problems:
            typer.echo(f"  - {problem}")
        raise typer.Exit(1)
    typer.echo(f"cache {cache}: ok")


@cache_app.command("export")
def export_cmd(
    cache: Path = typer.Argument(..., help="Cache directory (holds cache.json)."),
    out: Path = typer.Argument(..., help="Output file, e.g. features.h5."),
    format: str = option("h5", "--format", help="Output format; only h5 (HDF5) is supported."),
) -> None:
    """Write every committed array (cache-global indices), the captions and cache.json into one file."""
    from fgvu.cache.tools import export_h5
    from fgvu.cache import CacheError

    if format != "h5":
        raise CacheError(f"unknown export format {format!r}; supported: h5")
    path = export_h5(cache, out)
    typer.echo(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")


def register(app: typer.Typer) -> None:
    app.add_typer(cache_app, name="cache")
