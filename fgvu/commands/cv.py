"""`fgvu cv`: group k-fold cross-validation by base video, every fold an ordinary fit run.

Takes every `fgvu fit` option (generated from FitConfig and ModelConfig); `--folds` defaults to
5 here, and `--fold` is not allowed (cv runs them all).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fgvu.commands.common import console_logging, option, quiet_option
from fgvu.fusion.config import FitConfig
from fgvu.options import config_options
from fgvu.settings import SettingsError

DEFAULT_FOLDS = 5


@config_options(FitConfig)
def cv_cmd(
    cache: Optional[str] = typer.Argument(None, help="Feature cache (a folder or a store URL). Default: caches/<--dataset>, or the only "
                                           "cache under caches/."),
    dataset: Optional[str] = typer.Option(None, help="Pick the cache caches/<dataset> when CACHE is not given."),
    out: Optional[Path] = option(None, help="Folder for fold-<k>/ run folders, cv.json and cv.md.",
                                 shown="under runs/, named cv-<dataset>-<modalities>-<fusion>-s<seed>"),
    *,
    quiet: bool = quiet_option(),
    **options,
) -> None:
    """Group k-fold by base video over train + val: fit every fold (resuming finished ones), then
    report mean ± std of each metric over the folds (default 5 folds)."""
    from fgvu.cache import read_spec
    from fgvu.cache.location import cache_path
    from fgvu.fusion.config import build_fit_config
    from fgvu.fusion.crossval import run_cv
    from fgvu.settings import find_cache, paths

    if options.get("fold") is not None:
        raise SettingsError("--fold picks one fold of `fgvu fit`; `fgvu cv` runs every fold")
    cfg = build_fit_config(options)
    folds = cfg.folds or DEFAULT_FOLDS
    if folds < 2:
        raise SettingsError(f"--folds {folds}: cross-validation needs at least 2 folds")
    cache = cache_path(cache) if cache is not None else find_cache(dataset)
    spec = read_spec(cache)
    if out is None:
        out = Path(paths().runs) / f"cv-{spec.dataset}-{''.join(cfg.model.modalities)}-{cfg.model.fusion}-s{cfg.seed}"
    with console_logging():
        summary = run_cv(cache, cfg, out, folds, progress=not quiet, log=typer.echo)
    for key, s in summary["metrics"].items():
        typer.echo(f"{key:<14}{s['mean']:.4f} ± {s['std']:.4f}  over {folds} folds ({summary['label']})")
    typer.echo(f"wrote {out / 'cv.json'} and {out / 'cv.md'}")


def register(app: typer.Typer) -> None:
    app.command("cv")(cv_cmd)
