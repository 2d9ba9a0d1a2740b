"""`fgvu demo`: the whole pipeline on synthetic videos with tiny encoders, on the CPU, in minutes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from fgvu.commands.common import console_logging, option, quiet_option
from fgvu.fusion.config import FitConfig, ModelConfig


def demo(
    out: Path = option(Path("demo"), help="Folder for the demo's data, cache and run."),
    videos: int = option(24, help="Synthetic videos to generate (Aff-Wild2 layout)."),
    frames: int = option(400, help="Frames per synthetic video (lengths vary around this)."),
    epochs: Optional[int] = option(None, help="Training epochs for the fusion head.", shown=str(FitConfig().epochs)),
    seed: int = option(0, help="Seed for the data and the training run."),
    quiet: bool = quiet_option(),
) -> None:
    """Synthetic videos with sound -> `fgvu extract --encoders tiny` -> `fgvu fit` (v,i,t,a, xattn) -> `fgvu evaluate`.

    The labels depend on what is seen and heard (hue drives valence; motion speed and the
    soundtrack's pitch and loudness share arousal), so the fusion head learns them through the
    tiny random encoders. Re-running reuses what exists: extraction resumes and the videos are
    only written once.
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
    typer.secho(f"demo finished in {time.perf_counter() - t0:.0f} s; next: `make ablations`", fg=typer.colors.GREEN)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
