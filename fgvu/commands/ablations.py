"""`fgvu ablations` (the ablation grid with seeds, statistics, tables and plots) and `fgvu report RUN`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import typer

from fgvu.commands.common import checked_option, option, quiet_option
from fgvu.fusion.config import FitConfig
from fgvu.options import field_option


def ablations_cmd(
    cache: str | None = typer.Argument(None, help="Feature cache (a folder or a store URL); default: the cache of --dataset, or the only "
                                        "cache under the caches folder."),
    dataset: str | None = typer.Option(None, help="Use the cache of this dataset under the caches folder."),
    task: str | None = option(None, help="va or violence; a different one than the cache's is an error.",
                              shown="the cache's task"),
    out: Path | None = option(None, help="Output folder (runs/, CSVs, ablations.md, plots/).",
                              shown="<runs folder>/ablations-<dataset>"),
    grid: Path | None = option(None, help="TOML grid file (see examples/grids/quick.toml).",
                               shown="the full grid of DESIGN.md"),
    seeds: int | None = checked_option(None, help="Seeds per configuration (0..N-1).", ge=1,
                                       shown="the grid file's `seeds`, else 5"),
    jobs: int | None = checked_option(None, help="Parallel worker processes (each with --threads torch threads); "
                                      "with --engine ray, "
                                      "Ray tasks in flight.", ge=1, shown="every available core (of the cluster, with Ray)"),
    engine: Literal["local", "ray"] = option("local", help="local (worker processes on this machine) or ray (each run a Ray task on "
                         "the cluster at $RAY_ADDRESS, else one started here; the cache and --out must be on "
                         "storage every node shares)."),
    epochs: int | None = checked_option(None, help="Override the epochs of every run.", ge=1,
                                        shown="each configuration's own"),
    device: str | None = option(None, help="Training device of every run (auto, cpu, cuda, ...).",
                                shown="fgvu.toml's fit device, else auto"),
    threads: int | None = field_option(FitConfig, "threads"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the configurations and skipped ones; run nothing."),
    quiet: bool = quiet_option(),
) -> None:
    """Run an ablation grid on a cache: every configuration x seed is a normal fit run in OUT/runs/;
    finished runs are not repeated, failed ones are reported and retried next time. Writes runs.csv,
    summary.csv, ablations.md (mean ± std, paired t-test vs the full model, Holm) and plots/."""
    from fgvu.ablations.grid import default_grid, load_grid
    from fgvu.ablations.runner import run_ablations
    from fgvu.cache import CacheError, read_spec
    from fgvu.cache.location import cache_path
    from fgvu.fusion.config import build_fit_config
    from fgvu.settings import find_cache, paths

    cache = cache_path(cache) if cache is not None else find_cache(dataset)
    spec = read_spec(cache)
    if task is not None and task != spec.task:
        raise CacheError(f"cache {cache} holds task {spec.task!r}, not {task!r}")
    grid_def = load_grid(grid) if grid is not None else default_grid()
    base = build_fit_config({"device": device, "threads": threads})  # fgvu.toml's [model]/[fit], then options
    out = out if out is not None else Path(paths().runs) / f"ablations-{spec.dataset}"
    _, results, files = run_ablations(cache, out, grid_def, seeds or grid_def.seeds or 5, jobs, base, epochs,
                                      progress=not quiet, log=typer.echo, dry_run=dry_run, engine=engine)
    if not dry_run:
        failed = sum(r.status == "failed" for r in results)
        typer.echo(f"{len(results) - failed} runs finished, {failed} failed; report: {files['markdown']}")


def report_cmd(
    run: Path = typer.Argument(..., help="A finished fit run folder (metrics.json, metrics.jsonl, val_frames.npz)."),
    out: Path | None = option(None, help="Where to write the plots.", shown="RUN/report"),
) -> None:
    """Draw one run's plots (training curves; confusion matrix or valence/arousal density) and its
    failure analysis (worst videos; CCC per quadrant or false positives/negatives per video)."""
    from fgvu.ablations.report import report_run

    files = report_run(run, out)
    for path in files.values():
        typer.echo(str(path))


def register(app: typer.Typer) -> None:
    app.command("ablations")(ablations_cmd)
    app.command("report")(report_cmd)
