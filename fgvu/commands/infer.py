"""`fgvu predict RUN VIDEO... | --videos DIR` on raw videos, and `fgvu stream RUN --source ...`.

The options are generated from `PredictConfig` and `StreamConfig` (fgvu/inference/config.py);
`fgvu predict` on a cache (`--cache`, `--split`) lives in fgvu/commands/evaluate.py, which hands
raw videos to `predict_videos` here.
"""

from __future__ import annotations

from pathlib import Path
import typer

from fgvu.commands.common import console_logging
from fgvu.inference.config import PredictConfig, StreamConfig
from fgvu.options import config_options
from fgvu.settings import apply_overrides


def predict_videos(run: Path, files: list[Path], out: Path | None, options: dict) -> None:
    """Predict raw videos with a run: per video a CSV, a timeline PNG (events for violence), an overlay if
    asked, and a summary line; a video that fails prints its reason and the others go on."""
    from fgvu.fusion.run_folder import video_predictions_dir
    from fgvu.inference.outputs import summary_line, write_outputs
    from fgvu.inference.predictor import Predictor

    cfg = apply_overrides(PredictConfig(), {k: v for k, v in options.items() if v is not None}, "command line")
    out = out if out is not None else video_predictions_dir(run)
    predictor = Predictor.from_run(run, **cfg.encoder_options())
    with console_logging():
        result = predictor.predict_videos(files, folder=cfg.videos, keep_cache=cfg.keep_features,
                                          progress=cfg.progress)
    several = len(result.predictions) + len(result.failures) > 1
    for prediction in result.predictions:
        overlay = None
        if cfg.overlay is not None:
            overlay = Path(cfg.overlay) / f"{prediction.name}.mp4" if several else Path(cfg.overlay)
        written = write_outputs(prediction, out, thumbnails=cfg.thumbnails, overlay=overlay)
        typer.echo(summary_line(prediction))
        typer.echo("  wrote " + ", ".join(str(p) for p in written.values()))
    for name, reason in result.failures:
        typer.secho(f"{name}: failed: {reason}", fg=typer.colors.RED, err=True)
    typer.echo(f"{len(result.predictions)} videos predicted, {len(result.failures)} failed"
               + (f"; features kept in {result.cache}" if result.cache is not None else ""))
    if result.failures and not result.predictions:
        raise typer.Exit(1)


@config_options(StreamConfig)
def stream_cmd(run: Path = typer.Argument(..., help="Run folder written by `fgvu fit`."), **options) -> None:
    """Online inference: read a stream's frames as they arrive, run each window as soon as its frames are
    in, emit each frame's prediction by the lookahead rule; report per-window latency per component."""
    from fgvu.inference.predictor import Predictor
    from fgvu.inference.stream import StreamRunner

    given = {k: v for k, v in options.items() if v is not None}
    cfg = apply_overrides(StreamConfig(source=given["source"]), given, "command line")
    predictor = Predictor.from_run(run, **cfg.encoder_options())
    with console_logging():
        result = StreamRunner(predictor, cfg).run()
    for line in result.lines():
        typer.echo(line)
    typer.echo("wrote " + ", ".join(str(p) for p in result.files.values()))


def register(app: typer.Typer) -> None:
    app.command("stream")(stream_cmd)

