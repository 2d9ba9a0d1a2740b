"""A run's recorded encoders over new, unlabelled videos: the ordinary extraction into a cache.

Predicting on raw videos runs `fgvu extract` itself (`run_extract`) with the run's sampling plan,
caption prompt and encoders, into a cache of its own, and predicts from that cache. So a raw
video's predictions are those of extract -> cache -> `fgvu predict --cache`, by construction.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from fgvu.errors import FgvuError
from fgvu.extract.datasets.base import VIDEO_SUFFIXES, DatasetAdapter, DatasetError, Targets, VideoItem, find_videos

SPLIT = "test"  # the split unlabelled videos get, as `fgvu extract --dataset folder --task` gives them


class VideoFilesAdapter(DatasetAdapter):
    """Given video files, unlabelled: each is a "test" item named after its file, all targets masked."""

    name = "files"
    layout_help = "  any video files FFmpeg reads, given one by one or as a folder"

    def __init__(self, videos: dict[str, Path], task: str):
        common = os.path.commonpath([str(Path(p).resolve().parent) for p in videos.values()]) if videos else "."
        super().__init__(common)
        self.videos = videos
        self.task = task

    def items(self) -> list[VideoItem]:
        return [VideoItem(name, path, SPLIT, None) for name, path in sorted(self.videos.items())]

    def load_targets(self, item: VideoItem, n_frames: int) -> Targets:
        return self.unlabelled(n_frames)


def name_videos(files=(), folder: str | Path | None = None) -> dict[str, Path]:
    """name -> file for the given files (named by their stem) and the videos under `folder` (named by
    their path relative to it, without suffix, as `--dataset folder` names them). Two videos with
    one name, a missing file or a folder without videos are errors naming them."""
    videos: dict[str, Path] = {}

    def add(name: str, path: Path) -> None:
        if name in videos:
            raise DatasetError(f"two videos would be named {name!r}: {videos[name]} and {path}; rename one")
        videos[name] = path

    for f in files:
        path = Path(f)
        if path.is_dir():
            raise DatasetError(f"{path} is a folder; pass it with --videos to predict every video in it")
        if not path.exists():
            raise DatasetError(f"{path}: no such file")
        add(path.stem if path.suffix.lower() in VIDEO_SUFFIXES else path.name, path)
    if folder is not None:
        folder = Path(folder)
        if not folder.is_dir():
            raise DatasetError(f"--videos {folder}: no such folder")
        found = find_videos(folder)
        if not found:
            raise DatasetError(f"--videos {folder}: no video files in it (looked for {', '.join(VIDEO_SUFFIXES)})")
        for path in found:
            add(path.relative_to(folder).with_suffix("").as_posix(), path)
    if not videos:
        raise DatasetError("no videos given: name video files, or a folder with --videos DIR")
    return videos


@dataclass
class Extracted:
    """What extracting the new videos gave: the cache, the names in it and the (name, reason) failures."""

    cache: Path
    names: list[str]
    failures: list[tuple[str, str]]


class PlanError(FgvuError):
    """A run whose cache's sampling plan `fgvu extract` cannot reproduce."""


def extract_videos(videos: dict[str, Path], spec, encoders, out: Path, device: str = "auto",
                   progress: bool = False) -> Extracted:
    """Extract `videos` into the cache `out` with `spec`'s sampling plan and prompt and the given encoders."""
    from fgvu.extract.config import ExtractConfig
    from fgvu.extract.pipeline import run_extract

    plan = spec.sampling
    cfg = ExtractConfig(dataset="folder", out=str(out), device=device, stride=plan.stride,
                        caption_every=plan.caption_every, video_frames=plan.video_frames,
                        caption_prompt=spec.caption_prompt, progress=progress)
    if cfg.sampling != plan:
        raise PlanError(f"the run's cache uses the sampling plan {plan.to_dict()}, which `fgvu extract` cannot "
                        f"reproduce (it extracts {cfg.sampling.to_dict()})")
    summary = run_extract(cfg, encoders=encoders, adapter=VideoFilesAdapter(videos, spec.task))
    failed = {name for name, _ in summary.failures}
    return Extracted(Path(out), [n for n in sorted(videos) if n not in failed], list(summary.failures))
