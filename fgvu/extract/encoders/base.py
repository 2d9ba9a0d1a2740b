"""The four kinds of frozen encoder that stage 1 runs, as one small interface.

Every frame encoder takes frames as numpy arrays (uint8 in [0,255] or float in [0,1], channels
last), does its own batched preprocessing on tensors, and returns float32 numpy arrays; the
audio encoder takes 16 kHz mono waveforms. Each exposes `fingerprint`, the dict that the cache
records so that a cache is never appended to with a different encoder.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from fgvu.errors import FgvuError


class EncoderError(FgvuError):
    """A user-facing problem with an encoder: unknown name, missing or mismatched weights, bad input."""


def file_sha256(path: str | Path, chunk: int = 1 << 22) -> str:
    """The sha256 of a checkpoint file, for the cache fingerprint."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def make_fingerprint(name: str, variant: str, dim: int, preprocessing: dict, checkpoint: str) -> dict:
    """The cache fingerprint of an encoder.

    `checkpoint` is the sha256 of the weights file, or "random-init:<seed>" for tiny variants.
    """
    return {"name": name, "variant": variant, "dim": int(dim), "preprocessing": preprocessing, "checkpoint": checkpoint}


def check_frames(frames: np.ndarray, ndim: int, what: str) -> np.ndarray:
    """Validate a frame batch: `ndim` dims, 3 channels last, uint8 or float. Returns it unchanged."""
    if not isinstance(frames, np.ndarray):
        raise EncoderError(f"{what}: expected a numpy array, got {type(frames).__name__}")
    if frames.ndim != ndim or frames.shape[-1] != 3:
        layout = "(B, T, H, W, 3)" if ndim == 5 else "(B, H, W, 3)"
        raise EncoderError(f"{what}: expected frames shaped {layout}, got {frames.shape}")
    if frames.dtype != np.uint8 and not np.issubdtype(frames.dtype, np.floating):
        raise EncoderError(f"{what}: expected uint8 or float frames, got {frames.dtype}")
    return frames


class VideoEncoder(ABC):
    """Clips (B, T, H, W, 3) -> per-frame embeddings (B, T, D), spatial tokens mean-pooled."""

    dim: int
    fingerprint: dict

    @abstractmethod
    def encode_clips(self, clips: np.ndarray) -> np.ndarray:
        """(B, T, H, W, 3) uint8 or float in [0,1] -> (B, T, D) float32."""

    @abstractmethod
    def encode_tokens(self, clips: np.ndarray) -> np.ndarray:
        """(B, T, H, W, 3) -> the full token grid (B, T*N, D) float32."""


class ImageTextEncoder(ABC):
    """Images and texts into one embedding space (a CLIP-style dual encoder)."""

    dim: int
    fingerprint: dict

    @abstractmethod
    def encode_images(self, images: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) uint8 or float in [0,1] -> (B, D) float32."""

    @abstractmethod
    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """list of B strings -> (B, D) float32, in the same space as `encode_images`."""


# Images per captioner batch. Captioning decides how long extraction takes, and batching is what
# makes it fast: MiniGPT-4 7B in fp16 on an H200 gives 54 captions/s at batch 64 (19 GiB) against
# 22 at batch 16 (benchmarks/bench_captioner.py).
CAPTION_BATCH = 64


class Captioner(ABC):
    """Images -> one caption each, generated in batches."""

    fingerprint: dict

    @abstractmethod
    def caption(self, images: np.ndarray, prompt: str) -> list[str]:
        """(B, H, W, 3) uint8 or float in [0,1] + a prompt -> B captions."""


class AudioEncoder(ABC):
    """16 kHz mono waveforms -> one embedding per `hop` samples (a wav2vec2-style frame rate).

    Frame m of an input covers samples [m * hop, m * hop + receptive_field). `normalize` asks
    for each track to be scaled to zero mean and unit variance first (what the model was trained
    on). Chunking a long track and pooling frames onto the grid is the caller's job
    (`fgvu.extract.audio_features`).
    """

    dim: int
    fingerprint: dict
    hop: int = 320
    receptive_field: int = 400
    normalize: bool = False
    batch_size: int = 8  # chunks per call
    chunk_seconds: float = 20.0  # each chunk's own stretch of the track ...
    context_seconds: float = 2.0  # ... and the context it sees on either side

    def frames_for(self, length: int) -> int:
        """Frames the encoder returns for an input of `length` samples."""
        return (length - self.receptive_field) // self.hop + 1 if length >= self.receptive_field else 0

    @abstractmethod
    def encode_waves(self, waves: np.ndarray) -> np.ndarray:
        """(B, L) float32 waveforms -> (B, frames_for(L), D) float32."""


def check_unit_range(frames: np.ndarray, what: str) -> None:
    """Float frames must lie in [0, 1] (uint8 frames are always fine); catches 0-255 floats."""
    if frames.dtype == np.uint8 or frames.size == 0:
        return
    low, high = float(frames.min()), float(frames.max())
    if low < -1e-3 or high > 1 + 1e-3:
        raise EncoderError(f"{what}: float frames must be in [0, 1], got values in [{low:.3g}, {high:.3g}]")


MODEL_FILE_PATTERNS = ("*.safetensors", "*.bin", "*.json", "*.model")


def directory_sha256(folder: str | Path, patterns: tuple[str, ...] = MODEL_FILE_PATTERNS) -> str:
    """One sha256 over the weight and config files of a model directory (names and contents, sorted)."""
    digest = hashlib.sha256()
    files = sorted({p for pattern in patterns for p in Path(folder).glob(pattern) if p.is_file()})
    for path in files:
        digest.update(path.name.encode() + b"\0" + file_sha256(path).encode() + b"\n")
    return digest.hexdigest()
