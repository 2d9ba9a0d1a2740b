"""Encode one video source on its sampling grids: each grid frame once, in batches.

Frames arrive in order (from the prefetch queue). Image-grid frames are batched into the CLIP
image tower, caption-grid frames into the captioner (captions are then embedded by the CLIP
text tower), and each window's VideoPrism clips are assembled as soon as their last frame has
arrived. Frames that no pending clip needs are dropped at once, so memory holds about one
window of frames plus the batches, however long the video is. The soundtrack, when there is an
audio encoder, is encoded once at the end and pooled onto the image grid (`audio_features`).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from fgvu.errors import FgvuError
from fgvu.extract.audio_features import AudioCounts, StepSpans, audio_rows
from fgvu.extract.audio_source import AudioTrack
from fgvu.extract.encoders.base import (
    CAPTION_BATCH, AudioEncoder, Captioner, EncoderError, ImageTextEncoder, VideoEncoder,
)
from fgvu.sampling import WindowLayout


class IncompleteVideoError(FgvuError):
    """The decoder delivered fewer frames than the sampling plan needs."""


@dataclass
class EncoderSet:
    """The frozen encoders of one extraction. `captioner` is None when captions are reused,
    `audio` when the cache stores no audio."""

    video: VideoEncoder
    image_text: ImageTextEncoder
    captioner: Captioner | None
    audio: AudioEncoder | None = None

    def fingerprints(self, captioner_fingerprint: dict | None = None) -> dict[str, dict]:
        """The cache's encoder fingerprints; the text tower is the image encoder's, with role "text"."""
        captioner = captioner_fingerprint if captioner_fingerprint is not None else self.captioner.fingerprint
        out = {
            "video": dict(self.video.fingerprint),
            "image": dict(self.image_text.fingerprint),
            "text": {**self.image_text.fingerprint, "role": "text"},
            "captioner": dict(captioner),
        }
        if self.audio is not None:
            out["audio"] = dict(self.audio.fingerprint)
        return out

    @property
    def dims(self) -> dict[str, int]:
        dims = {"video": int(self.video.dim), "image": int(self.image_text.dim), "text": int(self.image_text.dim)}
        if self.audio is not None:
            dims["audio"] = int(self.audio.dim)
        return dims

    def input_side(self) -> int | None:
        """The largest square input side any encoder resizes frames to, when the encoders say."""
        sides = [_input_side(e) for e in (self.video, self.image_text, self.captioner) if e is not None]
        known = [s for s in sides if s]
        return max(known) if known else None


def _input_side(encoder) -> int | None:
    """An encoder's input side, from an `input_size` attribute or its fingerprint's preprocessing."""
    candidates = [getattr(encoder, "input_size", None)]
    prep = (getattr(encoder, "fingerprint", None) or {}).get("preprocessing") or {}
    candidates += [prep.get(key) for key in ("input_size", "image_size", "size", "resize")]
    for value in candidates:
        if isinstance(value, (int, float)) and value > 0:
            return int(value)
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) for v in value):
            return int(max(value))
    return None


def conversion_size(height: int, width: int, side: int | None, halves: bool = False) -> tuple[int, int]:
    """(H, W) to convert decoded frames to: shrink (never enlarge) so the short side is `side`.

    Keeping the aspect ratio leaves each encoder's own resize/crop unchanged in effect, while a
    720p frame shrinks ~6x in memory before it is queued. With `halves` (two people side by
    side, each item seeing one half) the short side of each half is kept at `side`.
    """
    narrowest = width // 2 if halves else width
    if not side or min(height, narrowest) <= side:
        return int(height), int(width)
    scale = side / min(height, narrowest)
    return max(side, round(height * scale)), max(side * (2 if halves else 1), round(width * scale))


@dataclass(frozen=True)
class BatchSizes:
    """How many items each encoder call takes: CLIP images, VideoPrism clips, captioner images, texts."""

    image: int = 64
    clip: int = 8
    caption: int = CAPTION_BATCH
    text: int = 256


@dataclass
class EncodeCounts:
    """How much encoder work was done: frames and calls per encoder (benchmarks, tests)."""

    image_frames: int = 0
    image_calls: int = 0
    captioned_frames: int = 0
    caption_calls: int = 0
    texts: int = 0
    clips: int = 0
    clip_calls: int = 0
    audio_seconds: float = 0.0  # of soundtrack
    audio_samples: int = 0  # fed to the audio encoder (the track plus chunk context)
    audio_calls: int = 0

    def add(self, other: "EncodeCounts") -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class SourceFeatures:
    """Everything the encoders produced for one source, indexed like its WindowLayout."""

    image: np.ndarray  # [len(layout.image_frames), Di] f32
    text: np.ndarray  # [len(layout.caption_frames), Dt] f32
    captions: list[str]
    video: dict[int, np.ndarray]  # T -> [n_windows, T, Dv] f32
    counts: EncodeCounts = field(default_factory=EncodeCounts)
    audio: np.ndarray | None = None  # [len(layout.image_frames), Da] f32, when there is an audio encoder
    audio_mask: np.ndarray | None = None  # [len(layout.image_frames)] bool: the row holds real sound

    def streams(self) -> dict:
        """The modality streams by their cache name (`fgvu.modalities`), for a `VideoRecord`."""
        streams = {"image": self.image, "text": self.text, "video": self.video}
        if self.audio is not None:
            streams.update(audio=self.audio, audio_mask=self.audio_mask)
        return streams


@dataclass(frozen=True)
class AudioInput:
    """A source's soundtrack and what places it on the image grid: the video's rate and grid spacing."""

    track: AudioTrack
    fps: float
    image_every: int


class SourceEncoder:
    """Feed frames in increasing order with `add`, then `finish` for the features."""

    def __init__(self, encoders: EncoderSet, layout: WindowLayout, prompt: str,
                 batches: BatchSizes = BatchSizes(), captions: list[str] | None = None,
                 audio: AudioInput | None = None):
        if captions is not None and len(captions) != len(layout.caption_frames):
            raise ValueError(f"{len(captions)} captions given for {len(layout.caption_frames)} caption frames")
        if (encoders.audio is None) != (audio is None):
            raise ValueError("a soundtrack is needed exactly when the encoder set has an audio encoder")
        self.encoders, self.layout, self.prompt, self.batches = encoders, layout, prompt, batches
        self.audio = audio
        self.counts = EncodeCounts()
        self._given_captions = captions
        self._image_next = 0
        self._image_buf: list[np.ndarray] = []
        self._image_out: list[np.ndarray] = []
        self._caption_next = 0
        self._caption_buf: list[np.ndarray] = []
        self._captions: list[str] = []
        # clips: frames are held until every window whose clip needs them has been assembled
        self._clip_needed = set(np.concatenate([c.ravel() for c in layout.clip_frames.values()]).tolist())
        self._held: OrderedDict[int, np.ndarray] = OrderedDict()
        self._clip_next = {t: 0 for t in layout.clip_frames}
        self._clip_last = {t: c.max(axis=1) for t, c in layout.clip_frames.items()}
        self._clip_buf: dict[int, list[np.ndarray]] = {t: [] for t in layout.clip_frames}
        self._clip_out: dict[int, list[np.ndarray]] = {t: [] for t in layout.clip_frames}

    def add(self, index: int, frame: np.ndarray) -> None:
        """One decoded frame (H, W, 3) uint8; frames must come in increasing order."""
        lay = self.layout
        if self._image_next < len(lay.image_frames) and index == lay.image_frames[self._image_next]:
            self._image_next += 1
            self._image_buf.append(frame)
            if len(self._image_buf) >= self.batches.image:
                self._flush_images()
        if self._caption_next < len(lay.caption_frames) and index == lay.caption_frames[self._caption_next]:
            self._caption_next += 1
            if self._given_captions is None:
                self._caption_buf.append(frame)
                if len(self._caption_buf) >= self.batches.caption:
                    self._flush_captions()
        if index in self._clip_needed:
            self._held[index] = frame
            self._assemble_clips(index)

    def _assemble_clips(self, index: int) -> None:
        n_windows = self.layout.n_windows
        for t, frames in self.layout.clip_frames.items():
            while self._clip_next[t] < n_windows and self._clip_last[t][self._clip_next[t]] <= index:
                w = self._clip_next[t]
                self._clip_buf[t].append(np.stack([self._held[f] for f in frames[w].tolist()]))
                self._clip_next[t] += 1
                if len(self._clip_buf[t]) >= self.batches.clip:
                    self._flush_clips(t)
        # the earliest frame any pending clip still needs; everything before it can go
        pending = [frames[self._clip_next[t]].min() for t, frames in self.layout.clip_frames.items()
                   if self._clip_next[t] < n_windows]
        keep_from = min(pending) if pending else np.iinfo(np.int64).max
        while self._held and next(iter(self._held)) < keep_from:
            self._held.popitem(last=False)

    def _flush_images(self) -> None:
        if self._image_buf:
            self._image_out.append(np.asarray(self.encoders.image_text.encode_images(np.stack(self._image_buf)), np.float32))
            self.counts.image_frames += len(self._image_buf)
            self.counts.image_calls += 1
            self._image_buf = []

    def _flush_captions(self) -> None:
        if self._caption_buf:
            captions = self.encoders.captioner.caption(np.stack(self._caption_buf), self.prompt)
            if len(captions) != len(self._caption_buf):
                raise EncoderError(f"captioner returned {len(captions)} captions for {len(self._caption_buf)} images")
            self._captions += list(captions)
            self.counts.captioned_frames += len(self._caption_buf)
            self.counts.caption_calls += 1
            self._caption_buf = []

    def _flush_clips(self, t: int) -> None:
        if self._clip_buf[t]:
            n = len(self._clip_buf[t])
            # A short last batch is padded with copies of its last clip: a JIT-compiled video
            # encoder (VideoPrism in JAX) then sees one batch shape and compiles it once.
            batch = self._clip_buf[t] + [self._clip_buf[t][-1]] * (self.batches.clip - n)
            out = self.encoders.video.encode_clips(np.stack(batch))[:n]
            self._clip_out[t].append(np.asarray(out, np.float32))
            self.counts.clips += n
            self.counts.clip_calls += 1
            self._clip_buf[t] = []

    def _embed_texts(self, captions: list[str]) -> np.ndarray:
        out = []
        for i in range(0, len(captions), self.batches.text):
            out.append(np.asarray(self.encoders.image_text.encode_texts(captions[i:i + self.batches.text]), np.float32))
        self.counts.texts += len(captions)
        dim = self.encoders.image_text.dim
        return np.concatenate(out) if out else np.zeros((0, dim), np.float32)

    def finish(self) -> SourceFeatures:
        """Encode what is still batched and return the features of the whole source."""
        lay = self.layout
        missing = [
            (what, len(grid) - done)
            for what, grid, done in (
                ("image-grid", lay.image_frames, self._image_next),
                ("caption-grid", lay.caption_frames, self._caption_next),
                *((f"{t}-frame clip windows", lay.starts, self._clip_next[t]) for t in lay.clip_frames),
            )
            if done < len(grid)
        ]
        if missing:
            detail = ", ".join(f"{n} {what}" for what, n in missing)
            raise IncompleteVideoError(f"the decoder stopped early: missing {detail} of {lay.n_frames} frames")
        self._flush_images()
        self._flush_captions()
        for t in self._clip_buf:
            self._flush_clips(t)
        self._held.clear()
        captions = list(self._given_captions) if self._given_captions is not None else self._captions
        video = {t: np.concatenate(chunks) for t, chunks in self._clip_out.items()}
        features = SourceFeatures(
            image=np.concatenate(self._image_out), text=self._embed_texts(captions), captions=captions,
            video=video, counts=self.counts,
        )
        if self.audio is not None:
            counts = AudioCounts()
            spans = StepSpans(lay.image_frames, self.audio.image_every, lay.n_frames, self.audio.fps)
            features.audio, features.audio_mask = audio_rows(self.encoders.audio, self.audio.track, spans, counts)
            self.counts.audio_seconds += counts.seconds
            self.counts.audio_samples += counts.samples
            self.counts.audio_calls += counts.calls
        return features
