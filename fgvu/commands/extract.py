"""`fgvu extract`: run the frozen encoders over a dataset into a resumable Zarr cache."""

from __future__ import annotations

import dataclasses
from typing import Optional

import typer

from fgvu.extract.config import ExtractConfig

_D = {f.name: f.default for f in dataclasses.fields(ExtractConfig) if f.default is not dataclasses.MISSING}


def extract_cmd(
    dataset: str = typer.Option(..., help="Dataset layout: aff-wild2, dvd or folder."),
    root: Optional[str] = typer.Option(None, help="Dataset root.",
                                       show_default="$FGVU_DATA/<dataset>, else data/<dataset>"),
    out: Optional[str] = typer.Option(None, help="Cache directory to create or resume.",
                                      show_default="caches/<dataset>"),
    encoders: Optional[str] = typer.Option(
        None, help="Encoder set: 'paper' (VideoPrism-B, CLIP ViT-L-14, MiniGPT-4) or 'tiny' (random weights, "
        "for tests and the demo).", show_default=_D["encoders"]),
    video_encoder: Optional[str] = typer.Option(None, help="Override the set's video encoder (e.g. videoprism-large)."),
    image_encoder: Optional[str] = typer.Option(None, help="Override the set's CLIP image/text encoder (e.g. clip:ViT-B-16)."),
    captioner: Optional[str] = typer.Option(None, help="Override the set's captioner (e.g. captioner:/path/to/blip2)."),
    stride: Optional[int] = typer.Option(None, help="Frames between window starts (windows are 64 frames).",
                                         show_default=str(_D["stride"])),
    caption_every: Optional[int] = typer.Option(
        None, help="Caption-grid spacing in frames: 16 gives 4 captions per window, 8 gives 8.",
        show_default=str(_D["caption_every"])),
    video_frames: Optional[str] = typer.Option(
        None, help="VideoPrism clip lengths to cache, comma separated, e.g. 8,16,32 (one array each).",
        show_default=",".join(map(str, _D["video_frames"]))),
    parts: Optional[int] = typer.Option(None, help="Split the videos into K parts, one writer each.",
                                        show_default=str(_D["parts"])),
    part: Optional[int] = typer.Option(None, help="Run only part k (0-based), e.g. from a SLURM array task.",
                                       show_default="every part"),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda or cuda:N.", show_default=_D["device"]),
    caption_prompt: Optional[str] = typer.Option(None, help="Captioner prompt.", show_default="the dataset's prompt"),
    reuse_captions: Optional[str] = typer.Option(
        None, help="Take the captions from this cache (or 'auto' for caches/<dataset>) instead of captioning "
        "again, e.g. to change only the text encoder. Needs a new --out."),
    frames: Optional[str] = typer.Option(
        None, help="aff-wild2 only: read frames from the 'video' files or from 'cropped_aligned' folders.",
        show_default=_D["frames"]),
    labels: Optional[str] = typer.Option(None, help="folder only: the labels CSV.", show_default="ROOT/labels.csv"),
    limit: Optional[int] = typer.Option(None, help="Extract only the first N videos (by name); for quick trials."),
    engine: Optional[str] = typer.Option(
        None, help="local (this process) or ray (each part as a Ray task; pip install 'fgvu\\[ray]').",
        show_default=_D["engine"]),
    image_batch: Optional[int] = typer.Option(None, help="Frames per CLIP image call.",
                                              show_default=str(_D["image_batch"])),
    clip_batch: Optional[int] = typer.Option(None, help="Clips per VideoPrism call.", show_default=str(_D["clip_batch"])),
    caption_batch: Optional[int] = typer.Option(None, help="Frames per captioner call.",
                                                show_default=str(_D["caption_batch"])),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Decode each video once, cut it into 64-frame windows, run VideoPrism, CLIP and the captioner on
    the sampling grids, and append each whole video to the cache. Re-running resumes."""
    import logging

    from tqdm.contrib.logging import logging_redirect_tqdm

    from fgvu.extract.pipeline import run_extract
    from fgvu.settings import apply_overrides, load_section

    overrides = {
        "root": root, "out": out, "encoders": encoders, "video_encoder": video_encoder,
        "image_encoder": image_encoder, "captioner": captioner, "stride": stride, "caption_every": caption_every,
        "video_frames": _int_list(video_frames) if video_frames else None, "parts": parts, "part": part,
        "device": device, "caption_prompt": caption_prompt, "reuse_captions": reuse_captions, "frames": frames,
        "labels": labels, "limit": limit, "engine": engine, "image_batch": image_batch, "clip_batch": clip_batch,
        "caption_batch": caption_batch,
    }
    cfg = load_section(ExtractConfig(dataset=dataset), "extract")
    cfg = apply_overrides(cfg, {k: v for k, v in overrides.items() if v is not None}, "command line")
    cfg = dataclasses.replace(cfg, progress=progress)
    logger = logging.getLogger("fgvu")
    if not logger.handlers:  # warnings and failures as lines that do not break the progress bar
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    with logging_redirect_tqdm(loggers=[logger]):
        summary = run_extract(cfg)
    for line in summary.lines():
        typer.echo(line)
    if summary.all_failed:
        raise typer.Exit(1)


def _int_list(text: str) -> list[int]:
    from fgvu.extract.config import ExtractConfigError

    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ExtractConfigError(f"--video-frames: expected comma-separated integers such as 8,16,32, got {text!r}") from None


def register(app: typer.Typer) -> None:
    app.command("extract")(extract_cmd)
