"""`fgvu synth`: synthetic data with planted, learnable signal, for tests, the demo and sanity checks."""

from __future__ import annotations

from pathlib import Path

import typer

from fgvu.commands.common import option

synth_app = typer.Typer(help="Generate synthetic datasets (videos) or feature caches with learnable labels.",
                        no_args_is_help=True)


@synth_app.command("videos")
def synth_videos(
    out: Path = typer.Argument(..., help="Dataset root to create."),
    layout: str = option("aff-wild2", help="Directory layout to imitate: aff-wild2 or dvd."),
    videos: int = option(8, help="Number of videos."),
    frames: int = option(200, help="Frames per video (lengths vary around this; one is shorter than a window)."),
    seed: int = option(0, help="Random seed."),
    audio: bool = typer.Option(False, "--audio", help="Give most videos an AAC soundtrack whose pitch and loudness "
                               "(aff-wild2) or sounds of an off-screen fight (dvd) carry a part of the target the "
                               "pictures do not; every fifth video has no audio stream."),
) -> None:
    """Write small real video files in a dataset's layout; colour drives valence, motion speed
    drives arousal, fast collisions are violent (and with --audio, the soundtrack carries more)."""
    from fgvu.synth.videos import write_video_dataset

    root = write_video_dataset(out, layout=layout, videos=videos, frames=frames, seed=seed, audio=audio)
    sound = " with soundtracks" if audio else ""
    typer.echo(f"wrote {videos} synthetic videos{sound} in the {layout} layout under {root}")


@synth_app.command("features")
def synth_features(
    out: Path = typer.Argument(..., help="Cache directory to create."),
    task: str = option("va", help="va (valence-arousal) or violence."),
    videos: int = option(24, help="Number of videos."),
    frames: int = option(600, help="Frames per video (lengths vary around this)."),
    seed: int = option(0, help="Random seed."),
    audio: bool = typer.Option(False, "--audio", help="Add an audio stream (masked in some videos) that carries "
                               "its own part of the target."),
) -> None:
    """Write a feature cache directly (no videos, no encoders): each modality carries a different
    part of the target, so fusion can beat every single modality."""
    from fgvu.synth.features import write_feature_cache

    path = write_feature_cache(out, task=task, videos=videos, frames=frames, seed=seed, audio=audio)
    typer.echo(f"wrote a synthetic {task} feature cache with {videos} videos to {path}")


def register(app: typer.Typer) -> None:
    app.add_typer(synth_app, name="synth")
