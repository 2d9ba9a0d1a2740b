"""`fgvu evaluate` and `fgvu predict`: a finished run's metrics and submission-format predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fgvu.commands.common import option
from fgvu.inference.config import PredictConfig
from fgvu.options import OptionError, config_options

UNFINISHED_HELP = ("Use a run without metrics.json (interrupted, or still training) with its best checkpoint so "
                   "far; without it such a run is refused.")
PARTIAL_HELP = "Use a cache whose parts are not all extracted yet (by default a missing or unfinished part is refused)."


def evaluate_cmd(
    run: Path = typer.Argument(..., help="Run folder written by `fgvu fit`."),
    cache: Optional[Path] = option(None, help="Cache to evaluate on.", shown="the run's training cache"),
    split: str = option("val", help="Split to evaluate (val uses the run's own validation videos)."),
    allow_unfinished: bool = typer.Option(False, "--allow-unfinished", help=UNFINISHED_HELP),
    allow_partial: bool = typer.Option(False, "--allow-partial", help=PARTIAL_HELP),
) -> None:
    """Frame-level metrics of a run's best checkpoint, overall and per video; writes RUN/eval.json."""
    from fgvu.fusion.evaluate import evaluate, format_table

    result = evaluate(run, cache=cache, split=split, allow_unfinished=allow_unfinished, allow_partial=allow_partial)
    typer.echo(format_table(result))
    typer.echo(f"wrote {run / ('eval.json' if split == 'val' else f'eval-{split}.json')}")


@config_options(PredictConfig)
def predict_cmd(
    run: Path = typer.Argument(..., help="Run folder written by `fgvu fit`."),
    video_files: Optional[list[Path]] = typer.Argument(None, metavar="VIDEO", show_default=False,
                                                       help="Raw video files: the run's own encoders run on them."),
    split: str = option("test", help="Split to predict."),
    out: Optional[Path] = option(None, help="Folder for the prediction files.",
                                 shown="RUN/predictions-<split>, or RUN/predictions-videos for raw videos"),
    cache: Optional[Path] = option(None, help="Cache to predict from.", shown="the run's training cache"),
    allow_unfinished: bool = typer.Option(False, "--allow-unfinished", help=UNFINISHED_HELP),
    allow_partial: bool = typer.Option(False, "--allow-partial", help=PARTIAL_HELP),
    **options,
) -> None:
    """Frame-level predictions: of a cache's split in the benchmark's submission format (Aff-Wild2 or
    DVD), one file per video (a name that is not a plain file name, `test/clip` or `../x`, is
    percent-encoded, so every file stays inside --out); or of raw videos (VIDEO... or --videos DIR):
    per video a CSV with one row per frame, a timeline PNG, for violence an event list, and with
    --overlay the video with the values drawn on it."""
    from fgvu.fusion.evaluate import predict

    if video_files or options.get("videos"):
        if cache is not None:
            raise OptionError("--cache predicts a cache's split; raw videos (VIDEO... or --videos) need none")
        from fgvu.commands.infer import predict_videos

        return predict_videos(run, list(video_files or []), out, options)
    given = sorted(k for k, v in options.items() if v is not None)
    if given:
        raise OptionError(f"{', '.join('--' + k.replace('_', '-') for k in given)}: only for raw videos "
                          "(VIDEO... or --videos DIR)")

    out = out if out is not None else run / f"predictions-{split}"
    written = predict(run, out, split=split, cache=cache, allow_unfinished=allow_unfinished,
                      allow_partial=allow_partial)
    typer.echo(f"wrote {len(written)} prediction files to {out}")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_cmd)
    app.command("predict")(predict_cmd)
