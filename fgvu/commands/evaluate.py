"""`fgvu evaluate` and `fgvu predict`: a finished run's metrics and submission-format predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fgvu.commands.common import console_logging, option
from fgvu.fusion.config import FitConfig
from fgvu.inference.config import PredictConfig
from fgvu.options import OptionError, config_options, field_option

UNFINISHED_HELP = ("Use a run without metrics.json (interrupted, or still training) with its best checkpoint so "
                   "far; without it such a run is refused.")
PARTIAL_HELP = "Use a cache whose parts are not all extracted yet (by default a missing or unfinished part is refused)."


def evaluate_cmd(
    run: Path = typer.Argument(..., help="Run folder written by `fgvu fit`."),
    cache: Optional[str] = option(None, help="Cache (a folder or a store URL) to evaluate on; the split is then that cache's split, its "
                                   "encoders must be the run's, and the result goes to "
                                   "RUN/eval-<cache>-<fingerprint>-<split>.json.", shown="the run's training cache"),
    split: str = option("val", help="Split to evaluate. On the run's own cache: train, select or the reported "
                        "split use the run's own videos; any other is the cache's split."),
    allow_unfinished: bool = typer.Option(False, "--allow-unfinished", help=UNFINISHED_HELP),
    allow_partial: bool = typer.Option(False, "--allow-partial", help=PARTIAL_HELP),
    threads: Optional[int] = field_option(FitConfig, "threads"),
) -> None:
    """Frame-level metrics of a run's best checkpoint, overall and per video, with 95% bootstrap
    intervals over base videos; writes RUN/eval.json (val) or RUN/eval-<split>.json."""
    from fgvu.fusion.evaluate import evaluate, format_table

    with console_logging():
        result = evaluate(run, cache=cache, split=split, allow_unfinished=allow_unfinished,
                          allow_partial=allow_partial, threads=threads)
    typer.echo(format_table(result))
    typer.echo(f"wrote {result['file']}")


@config_options(PredictConfig)
def predict_cmd(
    run: Path = typer.Argument(..., help="Run folder written by `fgvu fit`."),
    video_files: Optional[list[Path]] = typer.Argument(None, metavar="VIDEO", show_default=False,
                                                       help="Raw video files: the run's own encoders run on them."),
    split: str = option("test", help="Split to predict."),
    out: Optional[Path] = option(None, help="Folder for the prediction files.",
                                 shown="RUN/predictions-<split>, or RUN/predictions-videos for raw videos"),
    cache: Optional[str] = option(None, help="Cache (a folder or a store URL) to predict from (its split; the run's encoders).",
                                   shown="the run's training cache"),
    sample: Optional[Path] = option(None, "--abaw-sample", "--sample",
                                    help="The organisers' sample: for va the ABAW sample file (writes one "
                                    "OUT/predictions.txt with exactly its rows, in its order); for violence a folder "
                                    "of per-video CSVs whose rows and frame numbering the output follows. Frames "
                                    "without a prediction are filled from the nearest predicted frame and counted.",
                                    shown="one file per video"),
    allow_unfinished: bool = typer.Option(False, "--allow-unfinished", help=UNFINISHED_HELP),
    allow_partial: bool = typer.Option(False, "--allow-partial", help=PARTIAL_HELP),
    threads: Optional[int] = field_option(FitConfig, "threads"),
    **options,
) -> None:
    """Frame-level predictions: of a cache's split in the benchmark's submission format (Aff-Wild2 or
    DVD, with P(violent)), one file per video (a name that is not a plain file name, `test/clip` or
    `../x`, is percent-encoded, so every file stays inside --out), or the organisers' sample filled
    in (--abaw-sample); or of raw videos (VIDEO... or --videos DIR): per video a CSV with one row per
    frame, a timeline PNG, for violence an event list, and with --overlay the video with the values
    drawn on it."""
    from fgvu.fusion.evaluate import predict, predict_from_sample

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
    flags = dict(split=split, cache=cache, allow_unfinished=allow_unfinished, allow_partial=allow_partial,
                 threads=threads)
    if sample is not None:
        written = predict_from_sample(run, out, sample, **flags)
        typer.echo(f"wrote {written.summary()} to {out}")
        return
    written = predict(run, out, **flags)
    typer.echo(f"wrote {len(written)} prediction files to {out}")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_cmd)
    app.command("predict")(predict_cmd)
