"""`fgvu cache info|verify|repair|export`: inspect, check, repair and convert feature caches."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from fgvu.commands.common import option, quiet_option

cache_app = typer.Typer(help="Inspect, verify, repair and export feature caches.", no_args_is_help=True)


@cache_app.command("info")
def info_cmd(
    cache: str = typer.Argument(..., help="Cache directory (holds cache.json), or a store URL (s3://bucket/cache)."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
) -> None:
    """Videos per split, windows, frames, dims, encoders, parts (finished, unfinished, missing), failures, size."""
    from fgvu.cache.tools import cache_info, info_lines

    info = cache_info(cache)
    typer.echo(json.dumps(info, indent=1) if as_json else "\n".join(info_lines(info)))


@cache_app.command("verify")
def verify_cmd(
    cache: str = typer.Argument(..., help="Cache directory (holds cache.json), or a store URL (s3://bucket/cache)."),
    fast: bool = typer.Option(False, "--fast", help="Skip reading the feature arrays (their checksums and the "
                              "NaN scan); everything else is still checked. For huge caches."),
) -> None:
    """Check every committed row: parts stamped with this cache.json and all finished, every shard stored,
    checksums equal, valid targets in range, indices and offsets consistent, no video twice. Exit 1 on problems."""
    from fgvu.cache.verify import verify_report

    report = verify_report(cache, fast=fast)
    for line in report.parts:
        typer.echo(f"  {line}")
    for note in report.notes:
        typer.echo(f"note: {note}")
    if report.problems:
        typer.echo(f"cache {cache}: {len(report.problems)} problem(s):")
        for problem in report.problems:
            typer.echo(f"  - {problem}")
        raise typer.Exit(1)
    typer.echo(f"cache {cache}: ok" + (" (--fast: feature checksums not checked)" if fast else ""))


@cache_app.command("repair")
def repair_cmd(
    cache: str = typer.Argument(..., help="Cache directory (holds cache.json), or a store URL (s3://bucket/cache)."),
    drop_duplicates: bool = typer.Option(False, "--drop-duplicates", help="Keep one copy of each video committed "
                                         "in several parts (the first in part order) and rewrite the others."),
    quiet: bool = quiet_option(),
) -> None:
    """Repair what can be repaired without re-extracting: duplicate videos. Run it while nothing writes the cache."""
    from fgvu.cache import CacheError
    from fgvu.cache.repair import drop_duplicates as drop, repair_lines

    if not drop_duplicates:
        raise CacheError("fgvu cache repair: say what to repair (--drop-duplicates)")
    for line in repair_lines(drop(cache, progress=not quiet)):
        typer.echo(line)


@cache_app.command("export")
def export_cmd(
    cache: str = typer.Argument(..., help="Cache directory (holds cache.json), or a store URL (s3://bucket/cache)."),
    out: Path = typer.Argument(..., help="Output file, e.g. features.h5."),
    format: str = option("h5", "--format", help="Output format; only h5 (HDF5) is supported."),
) -> None:
    """Write every committed array (cache-global indices), the captions and cache.json into one file.

    The file is written to OUT.partial and renamed when complete; the free space is checked first."""
    from fgvu.cache import CacheError
    from fgvu.cache.export import export_h5

    if format != "h5":
        raise CacheError(f"unknown export format {format!r}; supported: h5")
    path = export_h5(cache, out)
    typer.echo(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")


def register(app: typer.Typer) -> None:
    app.add_typer(cache_app, name="cache")
