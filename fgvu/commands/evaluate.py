"""`fgvu evaluate` and `fgvu predict`: a finished run's metrics and submission-format predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fgvu.commands.common import option
from fgvu.fusion.config import FitConfig
from fgvu.options import field_option


def evaluate_cmd(
    run: Path = typer.Argument(..., help="Run folder written by `fgvu fit`."),
    cache: Optional[Path] = option(None, help="Cache to evaluate on.", shown="the run's training cache"),
    split: str = option("val", help="Split to evaluate (val uses the run's own validation videos)."),
    threads: Optional[int] = field_option(FitConfig, "threads"),
) -> None:
    """Frame-level metrics of a run's best checkpoint, overall and per video; writes RUN/eval.json."""
    from fgvu.fusion.evaluate import evaluate, format_table

    result = evaluate(run, cache=cache, split=split, threads=threads)
    typer.echo(format_table(result))
    typer.echo(f"wrote {run / ('eval.json' if split == 'val' else f'eval-{split}.json')}")


def predict_cmd(
    run: Path = typer.Argument(..., help="Run folder written by `fgvu fit`."),
    split: str = option("test", help="Split to predict."),
    out: Optional[Path] = option(None, help="Folder for the prediction files.", shown="RUN/predictions-<split>"),
    cache: Optional[Path] = option(None, help="Cache to predict from.", shown="the run's training cache"),
    threads: Optional[int] = field_option(FitConfig, "threads"),
) -> None:
    """Frame-level predictions in the benchmark's submission format (Aff-Wild2 or DVD)."""
    from fgvu.fusion.evaluate import predict

    out = out if out is not None else run / f"predictions-{split}"
    written = predict(run, out, split=split, cache=cache, threads=threads)
    typer.echo(f"wrote {len(written)} prediction files to {out}")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_cmd)
    app.command("predict")(predict_cmd)
