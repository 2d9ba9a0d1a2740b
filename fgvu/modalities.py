"""The modality registry: one entry per stream the fusion head can read.

A window of a video is seen through several streams. Each is one `Modality` entry here, and
everything that handles streams iterates over `MODALITIES`: the cache layout, writer, reader,
verifier and exporter (`fgvu.cache`), the training data and the model (`fgvu.fusion`), the
CLI's `--modalities` and `--query`, and the ablation grid.

Two kinds of storage exist:

- `grid`: one feature row per frame of a frame grid that every window of a video shares
  (the image grid every 4 frames, the caption grid every 16), and per window an index into
  those rows. Each grid frame is encoded once, however many windows overlap it. The grids
  themselves (frame numbers and window indices) are `GRIDS`; they are stored whether or not
  a modality on them is.
- `clip`: one array per clip length T, [n_windows, T, D], for encoders that see a whole clip
  (VideoPrism).

A modality with `masked=True` also stores a per-row validity mask (audio: a video without a
soundtrack, or a gap in it); masked steps are left out of attention and reconstruction.
Audio lives on the image grid: one row per image-grid frame, covering that frame's step of
time, so audio step k of a window covers the same seconds as image step k.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fgvu.errors import FgvuError


@dataclass(frozen=True)
class Grid:
    """A frame grid shared by every window of a video (see `fgvu.sampling`)."""

    name: str  # "image" or "caption"
    every: str  # the SamplingPlan field with the grid's spacing in frames
    table: str  # the row table it grows (the key in commit.json's row counts)
    frames: str  # array of the frame number of each row
    index: str  # array [n_windows, steps] of each window's rows
    extract_option: str | None = None  # the `fgvu extract` option that sets the spacing, if any

    @property
    def frames_key(self) -> str:
        """The attribute name of the frame numbers on records, views and layouts ("image_frame")."""
        return self.frames.rsplit("/", 1)[1]

    @property
    def index_key(self) -> str:
        """The attribute name of the window index ("image_index")."""
        return self.index.rsplit("/", 1)[1]

    def steps(self, plan) -> int:
        """Grid rows per window under `plan` (16 on the image grid by default)."""
        return plan.window // getattr(plan, self.every)


GRIDS: dict[str, Grid] = {
    "image": Grid("image", "image_every", "image", "frames/image_frame", "windows/image_index"),
    "caption": Grid("caption", "caption_every", "text", "frames/caption_frame", "windows/caption_index",
                    extract_option="--caption-every"),
}


@dataclass(frozen=True)
class Modality:
    """One stream: how it is stored, where its steps lie in a window, what fills it."""

    letter: str  # what --modalities and the model call it
    name: str  # the key in cache.json's dims and encoders, and the --query value
    storage: Literal["grid", "clip"]
    role: str  # the extraction encoder role that fills it
    # the FitConfig field that picks its steps per window at training time; None: every grid step
    length_option: str | None
    description: str
    grid: str | None = None  # grid storage: the name of its GRIDS entry
    masked: bool = False  # stores a per-row validity mask
    how_to_add: str = ""  # how to get it into a cache that lacks it, for error messages

    @property
    def features(self) -> str:
        """The feature array ("frames/image"); for clips, the prefix of one array per T."""
        return f"frames/{self.name}" if self.storage == "grid" else f"clips/{self.name}_f"

    @property
    def mask(self) -> str | None:
        """The per-row validity mask array, when the modality has one."""
        return f"frames/{self.name}_mask" if self.masked else None

    @property
    def mask_key(self) -> str | None:
        """The attribute name of the mask on records and views ("audio_mask")."""
        return f"{self.name}_mask" if self.masked else None

    @property
    def on_grid(self) -> Grid:
        """The grid a grid modality lives on."""
        if self.grid is None:
            raise TypeError(f"modality {self.letter!r} is stored per clip, not on a grid")
        return GRIDS[self.grid]

    def clip_array(self, t: int) -> str:
        """The array of its T-frame clips ("clips/video_f16")."""
        return f"{self.features}{int(t)}"


MODALITIES: dict[str, Modality] = {
    m.letter: m
    for m in (
        Modality("v", "video", "clip", "video", "video_frames", "VideoPrism embeddings of each window's clip"),
        Modality("i", "image", "grid", "image", "image_frames", "CLIP image embeddings of the image grid",
                 grid="image"),
        Modality("t", "text", "grid", "text", "captions", "CLIP text embeddings of the captions", grid="caption"),
        # one row per image-grid frame, pooled over that frame's step of time; masked where the
        # soundtrack is missing, silent or broken
        Modality("a", "audio", "grid", "audio", None, "speech-model embeddings of the soundtrack, per image step",
                 grid="image", masked=True,
                 how_to_add="extract with --audio-encoder, or add it to this cache with "
                            "`fgvu extract --only audio --into CACHE`"),
    )
}
BY_NAME: dict[str, Modality] = {m.name: m for m in MODALITIES.values()}
# The query stream when the configured one is not among the chosen modalities.
QUERY_PREFERENCE = ("i", "v", "t")


class ModalityError(FgvuError):
    """A modality letter or name that the registry does not know."""


def known() -> str:
    """'v (video), i (image), t (text), a (audio)' for error messages and help texts."""
    return ", ".join(f"{m.letter} ({m.name})" for m in MODALITIES.values())


def canonical(letters) -> tuple[str, ...]:
    """The given letters in registry order, without duplicates; unknown letters are an error."""
    letters = tuple(letters)
    unknown = sorted({x for x in letters if x not in MODALITIES})
    if unknown or not letters:
        raise ModalityError(f"unknown modality letters {unknown or '(none given)'}; use a subset of {known()}")
    return tuple(m for m in MODALITIES if m in letters)


def by_name(name: str) -> Modality:
    """The modality called `name` ("image"); unknown names are an error."""
    if name not in BY_NAME:
        raise ModalityError(f"unknown modality {name!r}; known: {', '.join(BY_NAME)}")
    return BY_NAME[name]


def query_letter(query: str, letters) -> str:
    """The query stream's letter: `query` (a modality name) if it is among `letters`, else the
    first of image, video, text, ... that is."""
    letter = by_name(query).letter
    if letter in letters:
        return letter
    order = list(QUERY_PREFERENCE) + [m for m in MODALITIES if m not in QUERY_PREFERENCE]
    return next(m for m in order if m in letters)
