"""`fgvu score`: the official metric of any submission, from its files and the annotation files."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import typer

from fgvu.commands.common import checked_option, console_logging, option


def score_cmd(
    predictions: Path = typer.Argument(..., help="Submission: for va an ABAW predictions.txt or a folder of "
                                       "<video>.txt files; for violence a folder of <video>.csv files."),
    annotations: Path = typer.Argument(..., help="The dataset's annotation files (a folder, or one file): "
                                       "Aff-Wild2 <video>.txt (-5 invalid) or DVD <video>.csv."),
    task: Literal["va", "violence"] = typer.Option(..., help="The task the files are for: va (Aff-Wild2) or "
                                                   "violence (DVD)."),
    draws: int = checked_option(1000, help="Bootstrap draws over base videos for the 95% intervals.", ge=1),
    out: Optional[Path] = option(None, help="Also write the result as JSON to this file.", shown="print only"),
) -> None:
    """Frame-level CCC (va) or macro-F1 (violence) of a submission, pooled over every annotated
    video as the challenges score it; every valid annotated frame needs a prediction."""
    from fgvu.atomic_io import write_json
    from fgvu.scoring import score_files

    with console_logging():
        result = score_files(predictions, annotations, task, draws)
    metrics = result["metrics"]
    typer.echo(f"{task} · {result['n_videos']} annotated videos · {result['n_frames']} frames "
               f"({result['n_valid']} valid) · {predictions}")
    for key, value in metrics.items():
        if isinstance(value, float):
            ci = metrics.get(f"{key}_ci")
            typer.echo(f"{key:<14}{value:.4f}" + (f"   95% CI [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else ""))
    if result["unscored_videos"]:
        typer.echo(f"{len(result['unscored_videos'])} predicted videos have no annotation and were not scored")
    if out is not None:
        write_json(out, result)
        typer.echo(f"wrote {out}")


def register(app: typer.Typer) -> None:
    app.command("score")(score_cmd)
