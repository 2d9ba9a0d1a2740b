"""Encoders that return zeros of the right shape: a pipeline's cost without any model work.

Shared by the benchmarks; `build_null_encoder` is importable by Ray actors (put benchmarks/ on
their PYTHONPATH).
"""

from __future__ import annotations

import numpy as np

from fgvu.extract.encoders.base import Captioner, ImageTextEncoder, VideoEncoder, make_fingerprint


class NullVideo(VideoEncoder):
    """Zeros of the right shape: the pipeline's cost without any model work."""

    dim = 32

    def __init__(self, input_size: int = 72):
        self.input_size = input_size  # frames are converted for an encoder of this input side
        self.fingerprint = make_fingerprint("null-video", "null", 32, {"resize": [input_size] * 2}, "none")

    def encode_clips(self, clips):
        return np.zeros((*clips.shape[:2], self.dim), np.float32)

    def encode_tokens(self, clips):
        raise NotImplementedError


class NullImageText(ImageTextEncoder):
    dim = 64
    fingerprint = make_fingerprint("null-clip", "null", 64, {"size": [64, 64]}, "none")

    def encode_images(self, images):
        return np.zeros((len(images), self.dim), np.float32)

    def encode_texts(self, texts):
        return np.zeros((len(texts), self.dim), np.float32)


class NullCaptioner(Captioner):
    fingerprint = make_fingerprint("null-captioner", "null", 0, {}, "none")

    def caption(self, images, prompt):
        return ["-"] * len(images)


def build_null_encoder(role: str, cfg=None, input_size: int = 288):
    """The null encoder of one role; frames are converted for an encoder of `input_size`, as for VideoPrism."""
    if role == "video":
        return NullVideo(input_size)
    return NullImageText() if role == "image" else NullCaptioner()
