"""A source's encoder work as chunks, for engines that encode away from the decoder (Ray).

Each chunk is one encoder call of the local engine (`encoding.SourceEncoder`), cut the same
way, so that the same frames meet the same encoders in the same batches and the features come
out bit for bit the same:

- image: `image_batch` consecutive image-grid frames, one CLIP image call;
- caption: lcm(`caption_batch`, `text_batch`) consecutive caption-grid frames, captioned in
  `caption_batch` calls and embedded in `text_batch` calls, whose boundaries then fall where the
  local engine's do;
- clip: `clip_batch` consecutive windows of one clip length T, one VideoPrism call padded to
  `clip_batch` clips; the chunk carries each distinct frame once and the clips as indices.

`ChunkCutter` turns the decoder's frames (in increasing order) into chunks as soon as each is
complete, holding only the frames that pending chunks still need. `assemble` puts the encoded
chunks back together into the source's `SourceFeatures`.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import lcm

import numpy as np

from fgvu.extract.encoding import BatchSizes, EncodeCounts, IncompleteVideoError, SourceFeatures
from fgvu.sampling import WindowLayout

KINDS = ("image", "caption", "clip")


@dataclass(frozen=True)
class Chunk:
    """One encoder call's worth of a source: which frames it needs and, for clips, how they form clips."""

    kind: str  # one of KINDS
    t: int  # the clip length for clips, 0 otherwise
    seq: int  # position among the chunks of the same kind and t
    start: int  # first grid row (image, caption) or window (clip) it covers
    n: int  # how many grid rows or windows it covers
    frames: np.ndarray  # the frame numbers it needs, sorted and distinct (empty for given captions)
    index: np.ndarray | None = None  # clips: [n_windows, T] positions in `frames`

    @property
    def key(self) -> tuple[str, int, int]:
        return self.kind, self.t, self.seq


def caption_chunk_size(batches: BatchSizes) -> int:
    """Caption frames per chunk: a whole number of captioner calls and of text-encoder calls."""
    return lcm(batches.caption, batches.text)


def plan_chunks(layout: WindowLayout, batches: BatchSizes, caption_frames: bool = True) -> list[Chunk]:
    """Every chunk of a source, in the order of the last frame each needs (the order they complete).

    `caption_frames` False: the captions are given (reused), so caption chunks need no frames
    and only carry the texts to embed.
    """
    chunks = []
    for seq, start in enumerate(range(0, len(layout.image_frames), batches.image)):
        frames = layout.image_frames[start:start + batches.image]
        chunks.append(Chunk("image", 0, seq, start, len(frames), frames))
    size = caption_chunk_size(batches)
    for seq, start in enumerate(range(0, len(layout.caption_frames), size)):
        rows = layout.caption_frames[start:start + size]
        frames = rows if caption_frames else np.zeros(0, np.int64)
        chunks.append(Chunk("caption", 0, seq, start, len(rows), frames))
    for t, clip_frames in sorted(layout.clip_frames.items()):
        for seq, start in enumerate(range(0, layout.n_windows, batches.clip)):
            windows = clip_frames[start:start + batches.clip]
            frames, index = np.unique(windows, return_inverse=True)
            chunks.append(Chunk("clip", t, seq, start, len(windows), frames, index.reshape(windows.shape)))
    return sorted(chunks, key=lambda c: (int(c.frames.max()) if len(c.frames) else -1, KINDS.index(c.kind), c.t))


class ChunkCutter:
    """Feed decoded frames in increasing order with `add`; it returns the chunks they complete."""

    def __init__(self, layout: WindowLayout, chunks: list[Chunk]):
        self.layout, self._pending = layout, list(chunks)
        self._held: dict[int, np.ndarray] = {}
        self._users: dict[int, int] = {}  # frame -> pending chunks that need it
        for chunk in chunks:
            for f in chunk.frames.tolist():
                self._users[f] = self._users.get(f, 0) + 1
        self._last = -1

    def ready(self) -> list[tuple[Chunk, np.ndarray]]:
        """Chunks that need no frames (given captions), or whose frames have all arrived."""
        out = []
        while self._pending and (not len(self._pending[0].frames) or self._pending[0].frames[-1] <= self._last):
            chunk = self._pending.pop(0)
            images = np.stack([self._held[f] for f in chunk.frames.tolist()]) if len(chunk.frames) else None
            for f in chunk.frames.tolist():
                self._users[f] -= 1
                if not self._users[f]:
                    del self._held[f]
            out.append((chunk, images))
        return out

    def add(self, index: int, frame: np.ndarray) -> list[tuple[Chunk, np.ndarray]]:
        """One decoded frame (H, W, 3) uint8; returns the chunks it completes with their frames stacked."""
        self._last = index
        if self._users.get(index):
            self._held[index] = frame
        return self.ready()

    def check_complete(self) -> None:
        """IncompleteVideoError, worded as the local engine words it, when the decoder stopped early."""
        if not self._pending:
            return
        lay, last = self.layout, self._last
        missing = [("image-grid", int((lay.image_frames > last).sum())),
                   ("caption-grid", int((lay.caption_frames > last).sum())),
                   *((f"{t}-frame clip windows", int((c.max(axis=1) > last).sum())) for t, c in lay.clip_frames.items())]
        detail = ", ".join(f"{n} {what}" for what, n in missing if n)
        raise IncompleteVideoError(f"the decoder stopped early: missing {detail} of {lay.n_frames} frames")


def assemble(layout: WindowLayout, results: dict[tuple[str, int, int], dict], dim: int) -> SourceFeatures:
    """The source's features from its encoded chunks, by chunk key: {"features", "captions", "counts"}."""
    def ordered(kind: str, t: int = 0) -> list[dict]:
        return [results[k] for k in sorted(k for k in results if k[0] == kind and k[1] == t)]

    counts = EncodeCounts()
    for result in results.values():
        counts.add(result["counts"])
    captions = [text for r in ordered("caption") for text in r["captions"]]
    text = [r["features"] for r in ordered("caption")]
    return SourceFeatures(
        image=np.concatenate([r["features"] for r in ordered("image")]),
        text=np.concatenate(text) if text else np.zeros((0, dim), np.float32),
        captions=captions,
        video={t: np.concatenate([r["features"] for r in ordered("clip", t)]) for t in sorted(layout.clip_frames)},
        counts=counts,
    )
