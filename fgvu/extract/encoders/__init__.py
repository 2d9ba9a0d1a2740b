"""The frozen encoders of stage 1 (VideoPrism, CLIP, a captioner, a speech model), built by name.

Only the registry is imported here; each encoder imports its framework (JAX, open_clip,
transformers) when it is built.
"""

from fgvu.extract.encoders.base import (
    CAPTION_BATCH, AudioEncoder, Captioner, EncoderError, ImageTextEncoder, VideoEncoder,
)
from fgvu.extract.encoders.registry import (
    ENCODER_SETS,
    build_audio_encoder,
    build_captioner,
    build_image_text_encoder,
    build_video_encoder,
)

__all__ = [
    "CAPTION_BATCH",
    "ENCODER_SETS",
    "AudioEncoder",
    "Captioner",
    "EncoderError",
    "ImageTextEncoder",
    "VideoEncoder",
    "build_audio_encoder",
    "build_captioner",
    "build_image_text_encoder",
    "build_video_encoder",
]
