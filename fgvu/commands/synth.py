"""`fgvu synth`: synthetic data with planted, learnable signal, for tests, the demo and sanity checks."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import typer

from fgvu.commands.common import checked_option, option
from fgvu.tasks import TASKS

LAYOUTS = ("aff-wild2", "dvd")
TASK_NAMES = tuple(TASKS)

synth_app = typer.Typer(help="Generate synthetic datasets (videos) or feature caches with learnable labels.",
                        no_args_is_help=True)


@synth_app.command("videos")
def synth_videos(
    out: Path = typer.Argument(..., help="Dataset root to create."),
    layout: Literal[LAYOUTS] = checked_option("aff-wild2", help="Directory layout to imitate.", kind=str,
                                              choices=LAYOUTS),
    videos: int = checked_option(8, help="Number of videos.", ge=1),
    frames: int = checked_option(200, help="Frames per video (lengths vary around this; one is shorter than a "
                                 "window).", ge=8),
    seed: int = checked_option(0, help="Random seed.", ge=0),
    audio: bool = typer.Option(False, "--audio", help="Give most videos an AAC soundtrack whose pitch and loudness "
                               "(aff-wild2) or sounds of an off-screen fight (dvd) carry a part of the target the "
                               "pictures do not; every fifth video has no audio stream."),
) -> None:
    """Write small real video files in a dataset's layout; hue drives valence, brightness (and speed)
    drives arousal, both as sharp events; fast collisions are violent (and with --audio, the
    soundtrack carries more). aff-wild2 also gets two-person videos (_left/_right) and
    cropped_aligned face crops with some frames missing."""
    from fgvu.synth.videos import write_video_dataset

    root = write_video_dataset(out, layout=layout, videos=videos, frames=frames, seed=seed, audio=audio)
    sound = " with soundtracks" if audio else ""
    typer.echo(f"wrote {videos} synthetic videos{sound} in the {layout} layout under {root}")


@synth_app.command("features")
def synth_features(
    out: Path = typer.Argument(..., help="Cache directory to create."),
    task: Literal[TASK_NAMES] = checked_option("va", help="va (valence-arousal) or violence.", kind=str,
                                               choices=TASK_NAMES),
    videos: int = checked_option(24, help="Number of videos.", ge=1),
    frames: int = checked_option(600, help="Frames per video (lengths vary around this).", ge=1),
    seed: int = checked_option(0, help="Random seed.", ge=0),
    audio: bool = typer.Option(False, "--audio", help="Add an audio stream (masked in some videos) that carries "
                               "its own part of the target."),
    dims: Optional[str] = option(None, help="Feature width of every modality (768: the paper's CLIP ViT-L/14 and "
                                 "VideoPrism-B size) or per modality, e.g. video=768,image=768,text=512 (the "
                                 "modalities named are the only ones written).", shown="video=48,image=48,text=32"),
    video_frames: str = option("16", help="Clip lengths of the video features, comma-separated, e.g. 8,16,32."),
    caption_every: int = checked_option(16, help="Caption-grid spacing in frames (8 gives 8 captions per window).",
                                        ge=1),
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
    path = write_feature_cache(out, task=task, videos=videos, frames=frames, seed=seed, audio=audio,
                               dims=parse_dims(dims) if dims is not None else None, plan=plan)
    typer.echo(f"wrote a synthetic {task} feature cache with {videos} videos to {path}")


def register(app: typer.Typer) -> None:
    app.add_typer(synth_app, name="synth")
