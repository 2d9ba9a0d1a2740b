"""One video source from file to cache records, shared by every engine.

`SourcePreparer` probes a source, plans its windows, reads each item's targets (masking frames the
source has no image for), looks up reused captions per view, and opens the frame iterator; it
holds only plain data, so it pickles into decoder processes (`decode_workers`) and Ray tasks
(`ray_engine`) alike. `video_record` turns a view's encoder features into one item's
`VideoRecord`. `failure_reason` is the text every engine records for a failed video.

A view is the part of the frame an item sees: None (the whole frame), "left" or "right"
(Aff-Wild2 `_left`/`_right` tracks read from one video without face crops).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from fgvu.errors import FgvuError
from fgvu.extract.audio_source import AudioTrack
from fgvu.extract.encoding import SourceFeatures, conversion_size
from fgvu.sampling import SamplingPlan, WindowLayout

if TYPE_CHECKING:
    from fgvu.extract.parts import SourceGroup
    from fgvu.extract.video_source import VideoInfo


def failure_reason(error: BaseException) -> str:
    """A user-facing error's own message; anything else with its type, so a bug is recognisable."""
    return str(error) if isinstance(error, FgvuError) else f"{type(error).__name__}: {error}"


@dataclass
class PreparedSource:
    """A probed source: its layout, per-item targets (or the error reading them), reused captions per
    view, and the frames it has no image for."""

    info: VideoInfo
    layout: WindowLayout
    targets: dict[str, object]
    captions: dict[str | None, list[str]] | None
    missing: list[int] = field(default_factory=list)
    audio: AudioTrack | None = None  # the soundtrack, when the cache stores audio

    def ok(self, items) -> list:
        """The items whose targets could be read: the ones worth encoding and writing."""
        return [item for item in items if not isinstance(self.targets[item.name], Exception)]

    def writable(self, group: SourceGroup) -> list:
        """The writable items of the source's group."""
        return self.ok(group.items)


def views(items) -> dict[str | None, list]:
    """Items by the part of the frame they see (None: the whole frame, "left", "right"), in order."""
    out: dict[str | None, list] = {}
    for item in items:
        out.setdefault(item.half, []).append(item)
    return out


@dataclass
class SourcePreparer:
    """prepare(group) -> (PreparedSource, frame iterator or None); picklable, so it runs in any process.

    `side` shrinks decoded frames to the largest encoder input side (`conversion_size`);
    `reused` looks captions up in another cache (`pipeline.ReusedCaptions`); with `audio`, the
    soundtrack is read too (from the video a track's face crops come from, `audio_source`).
    """

    plan: SamplingPlan
    adapter: object
    side: int | None
    reused: object | None = None
    audio: bool = False

    def __call__(self, group: SourceGroup) -> tuple[PreparedSource, Iterable[tuple[int, np.ndarray]] | None]:
        from fgvu.extract.datasets.base import mask_frames
        from fgvu.extract.video_source import open_video

        # a frame folder's length comes from the dataset (its annotation), not from its file names
        n_frames = self.adapter.frame_count(group.items[0])
        source = open_video(group.source, **({} if n_frames is None else {"n_frames": n_frames}))
        info = source.info
        layout = self.plan.layout(info.n_frames)
        targets = {}
        for item in group.items:
            try:
                targets[item.name] = mask_frames(self.adapter.load_targets(item, info.n_frames), source.missing)
                targets[item.name].warnings += list(source.notes)
            except FgvuError as e:
                targets[item.name] = e
        captions = None
        if self.reused is not None:
            captions = {half: self.reused.for_source([i.name for i in items], layout.caption_frames)
                        for half, items in views(group.items).items()}
        header = PreparedSource(info, layout, targets, captions, list(source.missing))
        if all(isinstance(t, Exception) for t in targets.values()):
            return header, None  # nothing to write: do not decode
        if self.audio:
            from fgvu.extract.audio_source import read_audio

            header.audio = read_audio(self.adapter.audio_source(group.items[0]), info.n_frames, info.fps)
        halves = any(item.half is not None for item in group.items)
        size = conversion_size(info.height, info.width, self.side, halves=halves)
        return header, source.frames(layout.needed_frames(), size=size)


def video_record(item, header: PreparedSource, features: SourceFeatures):
    """The cache record of one item: its view's features, its own targets, its view's frame size."""
    from fgvu.cache import VideoRecord

    lay, info = header.layout, header.info
    width = {None: info.width, "left": info.width // 2}.get(item.half, info.width - info.width // 2)
    targets = header.targets[item.name]
    return VideoRecord(
        name=item.name, split=item.split, n_frames=lay.n_frames, fps=float(info.fps),
        width=int(width), height=int(info.height), missing_frames=len(header.missing),
        window_start=lay.starts, image_index=lay.image_index, caption_index=lay.caption_index,
        valid=lay.valid, targets=targets.values, target_mask=targets.mask,
        image_frame=lay.image_frames, caption_frame=lay.caption_frames, captions=features.captions,
        **features.streams(),
    )
