"""`fgvu synth`: synthetic data with planted, learnable signal, for tests, the demo and sanity checks."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

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
) -> None:
    """Write small real video files in a dataset's layout; colour drives valence, motion speed
    drives arousal, fast collisions are violent."""
    from fgvu.synth.videos import write_video_dataset

    root = write_video_dataset(out, layout=layout, videos=videos, frames=frames, seed=seed)
    typer.echo(f"wrote {videos} synthetic videos in the {layout} layout under {root}")


@synth_app.command("features")
def synth_features(
    out: Path = typer.Argument(..., help="Cache directory to create."),
    task: str = option("va", help="va (valence-arousal) or violence."),
    videos: int = option(24, help="Number of videos."),
    frames: int = option(600, help="Frames per video (lengths vary around this)."),
    seed: int = option(0, help="Random seed."),
    dims: Optional[str] = option(None, help="Feature width of every modality (768: the paper's CLIP ViT-L/14 and "
                                 "VideoPrism-B size) or per modality, e.g. video=768,image=768,text=512 (the "
                                 "modalities named are the only ones written).", shown="video=48,image=48,text=32"),
    video_frames: str = option("16", help="Clip lengths of the video features, comma-separated, e.g. 8,16,32."),
    caption_every: int = option(16, min=1, help="Caption-grid spacing in frames (8 gives 8 captions per window)."),
) -> None:
    """Write a feature cache directly (no videos, no encoders): each modality carries a different
    part of the target, so fusion can beat every single modality."""
    from fgvu.options import int_list
    from fgvu.sampling import SamplingPlan
    from fgvu.synth.features import parse_dims, write_feature_cache

    try:
        frames_per_clip = int_list(video_frames)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--video-frames") from None
    plan = SamplingPlan(caption_every=caption_every, video_frames=frames_per_clip)
    path = write_feature_cache(out, task=task, videos=videos, frames=frames, seed=seed,
                               dims=parse_dims(dims) if dims is not None else None, plan=plan)
    typer.echo(f"wrote a synthetic {task} feature cache with {videos} videos to {path}")


def register(app: typer.Typer) -> None:
    app.add_typer(synth_app, name="synth")
