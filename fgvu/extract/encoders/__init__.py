"""The frozen encoders of stage 1 (VideoPrism, CLIP, a captioner), built by name.

Only the registry is imported here; each encoder imports its framework (JAX, open_clip,
transformers) when it is built.
"""

from fgvu.extract.encoders.base import Captioner, EncoderError, ImageTextEncoder, VideoEncoder
from fgvu.extract.encoders.registry import (
    DEFAULT_PROMPTS,
    ENCODER_SETS,
    build_captioner,
    build_image_text_encoder,
    build_video_encoder,
)

__all__ = [
    "DEFAULT_PROMPTS",
    "ENCODER_SETS",
    "Captioner",
    "EncoderError",
    "ImageTextEncoder",
    "VideoEncoder",
    "build_captioner",
    "build_image_text_encoder",
    "build_video_encoder",
]
