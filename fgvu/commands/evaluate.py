"""`fgvu evaluate` and `fgvu predict`: a finished run's metrics and submission-format predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fgvu.commands.common import console_logging, option


def evaluate_cmd(
    run: Path = typer.Argument(..., help="Run folder written by `fgvu fit`."),
    cache: Optional[Path] = option(None, help="Cache to evaluate on; the split is then that cache's split, its "
                                   "encoders must be the run's, and the result goes to "
                                   "RUN/eval-<cache>-<fingerprint>-<split>.json.", shown="the run's training cache"),
    split: str = option("val", help="Split to evaluate. On the run's own cache: train, select or the reported "
                        "split use the run's own videos; any other is the cache's split."),
) -> None:
    """Frame-level metrics of a run's best checkpoint, overall and per video, with 95% bootstrap
    intervals over base videos; writes RUN/eval.json (val) or RUN/eval-<split>.json."""
    from fgvu.fusion.evaluate import evaluate, format_table

    with console_logging():
        result = evaluate(run, cache=cache, split=split)
    typer.echo(format_table(result))
    typer.echo(f"wrote {result['file']}")


def predict_cmd(
    run: Path = typer.Argument(..., help="Run folder written by `fgvu fit`."),
    split: str = option("test", help="Split to predict."),
    out: Optional[Path] = option(None, help="Folder for the prediction files.", shown="RUN/predictions-<split>"),
    cache: Optional[Path] = option(None, help="Cache to predict from (its split; the run's encoders).",
                                   shown="the run's training cache"),
    sample: Optional[Path] = option(None, "--abaw-sample", "--sample",
                                    help="The organisers' sample: for va the ABAW sample file (writes one "
                                    "OUT/predictions.txt with exactly its rows, in its order); for violence a folder "
                                    "of per-video CSVs whose rows and frame numbering the output follows. Frames "
                                    "without a prediction are filled from the nearest predicted frame and counted.",
                                    shown="one file per video"),
) -> None:
    """Frame-level predictions in the benchmark's submission format (Aff-Wild2 or DVD, with P(violent))."""
    from fgvu.fusion.evaluate import predict, predict_from_sample

    out = out if out is not None else run / f"predictions-{split}"
    if sample is not None:
        written = predict_from_sample(run, out, sample, split=split, cache=cache)
        typer.echo(f"wrote {written.summary()} to {out}")
        return
    written = predict(run, out, split=split, cache=cache)
    typer.echo(f"wrote {len(written)} prediction files to {out}")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_cmd)
    app.command("predict")(predict_cmd)
