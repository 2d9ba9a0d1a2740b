"""`fgvu fit`: train the fusion head on a feature cache (stage 2).

Every training option is generated from a field of `ModelConfig` or `FitConfig`
(fgvu/fusion/config.py), which declares its help, choices, range and default; `[model]` and
`[fit]` in ./fgvu.toml override those defaults, and options given on the command line override both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fgvu.commands.common import console_logging, old_progress_option, option, quiet_option, show_progress
from fgvu.fusion.config import FitConfig
from fgvu.options import config_options
from fgvu.settings import SettingsError


@config_options(FitConfig)
def fit_cmd(
    cache: Optional[str] = typer.Argument(None, help="Feature cache to train on (a folder or a store URL). Default: caches/<--dataset>, "
                                           "or the only cache under caches/."),
    dataset: Optional[str] = typer.Option(None, help="Pick the cache caches/<dataset> when CACHE is not given."),
    task: Optional[str] = typer.Option(None, help="va or violence. Inferred from the cache; a value that "
                                       "disagrees with the cache is an error."),
    out: Optional[Path] = option(None, help="Run folder; a finished run there made with other options is kept "
                                 "unless --force.", shown="under runs/, named <dataset>-<modalities>-<fusion>-s<seed>"),
    *,
    force: bool = typer.Option(False, "--force", help="Replace a finished run in the run folder even when it was "
                               "made with other options (the same options re-run it without --force)."),
    allow_partial: bool = typer.Option(False, "--allow-partial", help="Train on a cache whose parts are not all "
                                       "extracted yet (by default a missing or unfinished part is refused)."),
    quiet: bool = quiet_option(),
    old_progress: Optional[bool] = old_progress_option(),
    **options,
) -> None:
    """Train the fusion head on a feature cache and keep the best checkpoint."""
    from fgvu.cache import read_spec
    from fgvu.cache.location import cache_path
    from fgvu.fusion.config import build_fit_config
    from fgvu.fusion.train import fit
    from fgvu.settings import find_cache, paths

    cfg = build_fit_config(options)  # fgvu.toml's mistakes before any look at the cache
    cache = cache_path(cache) if cache is not None else find_cache(dataset)
    spec = read_spec(cache)
    if task is not None and task != spec.task:
        raise SettingsError(f"--task {task} disagrees with cache {cache}, which holds {spec.task} targets")
    if out is None:
        out = Path(paths().runs) / f"{spec.dataset}-{''.join(cfg.model.modalities)}-{cfg.model.fusion}-s{cfg.seed}"
    with console_logging():
        result = fit(cache, cfg, out, progress=show_progress(quiet, old_progress), overwrite=force,
                     allow_partial=allow_partial)
    typer.echo("\n".join(result_lines(result)))
    typer.echo(f"run folder: {out}")


def result_lines(result: dict) -> list[str]:
    """What a finished fit prints: the selection split's best epoch, then the reported score with
    its intervals (a metrics.json from before the selection hold-out has only the second)."""
    from fgvu.fusion.run_folder import reported, selection_label

    split = result.get("reported_on", "val")
    shown = reported(result)
    scores = "  ".join(f"{k} {v:.4f}" + (f" [{shown[k + '_ci'][0]:.4f}, {shown[k + '_ci'][1]:.4f}]"
                                         if shown.get(k + "_ci") else "")
                       for k, v in shown.items() if isinstance(v, float))
    lines = [f"best epoch {result['best_epoch']} of {result['epochs_run']}"]
    if "select" in result:
        primary = result["primary"]
        lines[0] += (f", selected on {result['selected_on']} ({result['n_select_videos']} videos): "
                     f"{primary} {result['select'][primary]:.4f}")
    n_videos = result.get(f"n_{split}_videos")
    lines.append(f"reported on {split}" + (f" ({n_videos} videos)" if n_videos else "")
                 + f", {selection_label(result)}; 95% CI over base videos: {scores}")
    return lines


def register(app: typer.Typer) -> None:
    app.command("fit")(fit_cmd)
