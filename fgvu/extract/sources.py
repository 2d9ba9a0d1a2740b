"""One video source from file to cache records, shared by every engine.

`SourcePreparer` probes a source, plans its windows, reads each item's targets (and reused
captions) and opens the frame iterator; it holds only plain data, so it pickles into decoder
processes (`decode_workers`) and Ray tasks (`ray_engine`) alike. `video_records` turns a
source's encoder features into one `VideoRecord` per item. `failure_reason` is the text every
engine records for a failed video.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fgvu.errors import FgvuError
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
    """A probed source: its layout, per-item targets (or the error reading them), reused captions."""

    info: VideoInfo
    layout: WindowLayout
    targets: dict[str, object]
    captions: list[str] | None

    def writable(self, group: SourceGroup) -> list:
        """The items whose targets could be read: the ones worth encoding and writing."""
        return [item for item in group.items if not isinstance(self.targets[item.name], Exception)]


@dataclass
class SourcePreparer:
    """prepare(group) -> (PreparedSource, frame iterator or None); picklable, so it runs in any process.

    `side` shrinks decoded frames to the largest encoder input side (`conversion_size`);
    `reused` looks captions up in another cache (`pipeline.ReusedCaptions`).
    """

    plan: SamplingPlan
    adapter: object
    side: int | None
    reused: object | None = None

    def __call__(self, group: SourceGroup) -> tuple[PreparedSource, Iterable[tuple[int, np.ndarray]] | None]:
        from fgvu.extract.video_source import open_video

        source = open_video(group.source)
        info = source.info
        layout = self.plan.layout(info.n_frames)
        targets = {}
        for item in group.items:
            try:
                targets[item.name] = self.adapter.load_targets(item, info.n_frames)
            except FgvuError as e:
                targets[item.name] = e
        captions = None
        if self.reused is not None:
            captions = self.reused.for_source([i.name for i in group.items], layout.caption_frames)
        header = PreparedSource(info, layout, targets, captions)
        if all(isinstance(t, Exception) for t in targets.values()):
            return header, None  # nothing to write: do not decode
        size = conversion_size(info.height, info.width, self.side)
        return header, source.frames(layout.needed_frames(), size=size)


def video_records(group: SourceGroup, header: PreparedSource, features: SourceFeatures) -> list:
    """(item, VideoRecord) for every writable item of the source, each with its own targets."""
    from fgvu.cache import VideoRecord

    lay, info = header.layout, header.info
    out = []
    for item in header.writable(group):
        targets = header.targets[item.name]
        record = VideoRecord(
            name=item.name, split=item.split, n_frames=lay.n_frames, fps=float(info.fps),
            width=int(info.width), height=int(info.height),
            window_start=lay.starts, image_index=lay.image_index, caption_index=lay.caption_index,
            valid=lay.valid, targets=targets.values, target_mask=targets.mask,
            image_frame=lay.image_frames, caption_frame=lay.caption_frames, captions=features.captions,
            **features.streams(),
        )
        out.append((item, record))
    return out
