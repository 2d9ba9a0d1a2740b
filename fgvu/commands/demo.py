"""`fgvu demo`: the whole pipeline on synthetic videos with tiny encoders, on the CPU, in minutes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from fgvu.commands.common import checked_option, console_logging, option, quiet_option
from fgvu.fusion.config import FitConfig, ModelConfig


def demo(
    out: Path = option(Path("demo"), help="Folder for the demo's data, cache and run."),
    videos: int = checked_option(24, help="Synthetic videos to generate (Aff-Wild2 layout).", ge=1),
    frames: int = checked_option(400, help="Frames per synthetic video (lengths vary around this).", ge=8),
    epochs: Optional[int] = checked_option(None, help="Training epochs for the fusion head.", ge=1,
                                           shown=str(FitConfig().epochs)),
    seed: int = checked_option(0, help="Seed for the data and the training run.", ge=0),
    quiet: bool = quiet_option(),
) -> None:
    """Synthetic videos with sound -> `fgvu extract --encoders tiny` -> `fgvu fit` (v,i,t,a, xattn) -> `fgvu evaluate`.

    The labels depend on what is seen and heard (hue drives valence; brightness and speed, and the
    soundtrack's pitch and loudness, share arousal; both as sharp events), so the fusion head
    learns them through the tiny random encoders. Most tracks are read from face crops (some
    frames have none and are masked), one two-person video from its halves. The last line scores
    the same predictions against labels shifted by one frame: the benchmark's targets are sharp
    events, so a misalignment shows. Re-running reuses what exists: extraction resumes and the
    videos are only written once.
    """
    from fgvu.extract.config import ExtractConfig
    from fgvu.extract.pipeline import run_extract
    from fgvu.fusion.evaluate import evaluate, format_table
    from fgvu.fusion.train import fit
    from fgvu.synth.videos import write_video_dataset

    t0 = time.perf_counter()
    data, cache, run = out / "data" / "aff-wild2", out / "caches" / "aff-wild2", out / "runs" / "aff-wild2-vita-xattn"
    typer.secho(f"[1/4] synthetic videos with sound -> {data}", bold=True)
    if not (data / "VA_Estimation_Challenge").exists():
        write_video_dataset(data, layout="aff-wild2", videos=videos, frames=frames, seed=seed, audio=True)
    typer.secho(f"[2/4] fgvu extract --dataset aff-wild2 --encoders tiny --caption-every 8 --video-frames 8,16,32 "
                f"-> {cache}", bold=True)
    # A finer caption grid and extra clip lengths let `make ablations` run its sampling variants.
    with console_logging():
        summary = run_extract(ExtractConfig(dataset="aff-wild2", root=str(data), out=str(cache), encoders="tiny",
                                            device="cpu", caption_every=8, video_frames=(8, 16, 32),
                                            progress=not quiet))
    typer.echo("\n".join(summary.lines()))
    typer.secho(f"[3/4] fgvu fit --modalities v,i,t,a --fusion xattn -> {run}", bold=True)
    # on the CPU like the extraction, so the scores are the same on any machine (FitConfig's device is auto)
    model = ModelConfig(modalities=("v", "i", "t", "a"))
    cfg = FitConfig(model=model, seed=seed, device="cpu", **({} if epochs is None else {"epochs": epochs}))
    fit(cache, cfg, run, progress=not quiet, overwrite=True)  # the demo owns its run folder
    typer.secho(f"[4/4] fgvu evaluate {run}", bold=True)
    typer.echo(format_table(evaluate(run)))
    typer.echo(alignment_line(run))
    typer.secho(f"demo finished in {time.perf_counter() - t0:.0f} s; next: `make ablations`", fg=typer.colors.GREEN)


def alignment_line(run: Path, shift: int = 1) -> str:
    """The run's validation predictions against labels shifted by `shift` frames, next to aligned ones."""
    from fgvu.fusion.run_folder import load_val_frames
    from fgvu.synth.alignment import shifted_scores
    from fgvu.tasks import get_task

    table = load_val_frames(run)
    scores = shifted_scores(table.video, table.frame, table.y_true, table.y_pred, table.mask,
                            get_task("va").targets, shift)
    parts = [f"ccc_{name} {s['aligned']:.4f} -> {s['shifted']:.4f}" for name, s in scores.items()]
    aligned = np.mean([s["aligned"] for s in scores.values()])
    shifted = np.mean([s["shifted"] for s in scores.values()])
    return (f"the same predictions against labels shifted by {shift} frame{'s' if shift != 1 else ''} "
            f"(frames valid both ways): " + ", ".join(parts)
            + f", ccc_mean {aligned:.4f} -> {shifted:.4f} (drop {aligned - shifted:.4f})")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
