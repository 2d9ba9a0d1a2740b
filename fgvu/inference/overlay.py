"""The video re-encoded with its predictions drawn on every frame (PyAV in, PIL to draw, PyAV out).

The output has the input's frame count, frame size and frame rate. Each frame shows a panel with
every prediction column (value and a bar over the task's output range); frames where the task's
event column is 1 (violence) get a red border.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from fgvu.errors import FgvuError
from fgvu.tasks import get_task


class OverlayError(FgvuError):
    """An overlay that cannot be written: unreadable input, or a frame size no available encoder takes."""


def _encoder_settings(width: int, height: int) -> tuple[str, str, dict]:
    """(codec, pixel format, options): H.264 near-lossless; 4:4:4 when a side is odd (4:2:0 needs even sides)."""
    from fgvu.synth.videos import video_codec

    codec = video_codec()
    even = width % 2 == 0 and height % 2 == 0
    if codec == "libx264":
        return codec, "yuv420p" if even else "yuv444p", {"preset": "veryfast", "crf": "18"}
    if not even:
        raise OverlayError(f"this PyAV build has no H.264 encoder, and MPEG-4 cannot encode odd frame sizes "
                           f"({width}x{height})")
    return codec, "yuv420p", {}


class Painter:
    """Draws one prediction row onto an RGB frame."""

    def __init__(self, task: str, width: int, height: int):
        from PIL import ImageFont

        self.task = get_task(task)
        self.columns = self.task.prediction_columns
        self.size = (width, height)
        self.font_px = max(10, height // 20)
        try:
            self.font = ImageFont.load_default(size=self.font_px)
        except TypeError:  # Pillow < 10.1 has one bitmap size
            self.font = ImageFont.load_default()

    def __call__(self, rgb: np.ndarray, row: np.ndarray) -> np.ndarray:
        from PIL import Image, ImageDraw

        image = Image.fromarray(rgb)
        draw = ImageDraw.Draw(image, "RGBA")
        width, height = self.size
        low, high = self.task.output_range
        line = self.font_px + 4
        pad = max(2, self.font_px // 3)
        bar_w = max(8, width // 6)
        shown = [(c, v) for c, v in zip(self.columns, row.tolist()) if c != self.task.event_column]
        panel_w = min(width, pad * 3 + bar_w + 9 * self.font_px)
        draw.rectangle((0, 0, panel_w, pad * 2 + line * len(shown)), fill=(0, 0, 0, 150))
        for i, (name, value) in enumerate(shown):
            y = pad + i * line
            draw.text((pad, y), f"{name} {value:+.2f}", fill=(255, 255, 255, 255), font=self.font)
            x0 = panel_w - pad - bar_w
            fraction = float(np.clip((value - low) / (high - low), 0.0, 1.0))
            draw.rectangle((x0, y + 2, x0 + bar_w, y + line - 4), outline=(255, 255, 255, 200))
            draw.rectangle((x0, y + 2, x0 + round(fraction * bar_w), y + line - 4), fill=(80, 200, 255, 220))
        if self.task.event_column is not None and row[self.columns.index(self.task.event_column)] >= 0.5:
            edge = max(2, height // 40)
            draw.rectangle((0, 0, width - 1, height - 1), outline=(230, 30, 30, 255), width=edge)
            draw.text((pad, height - line - pad), f"{self.task.event_column} 1", fill=(255, 60, 60, 255),
                      font=self.font)
        return np.asarray(image)


def write_overlay(source: str | Path, prediction, out: str | Path) -> Path:
    """Re-encode `source` into `out` with `prediction` (a VideoPrediction) drawn on every frame."""
    import av

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        container = av.open(str(source))
    except av.error.FFmpegError as e:
        raise OverlayError(f"{source}: cannot be opened for the overlay ({e})") from None
    tmp = out.with_name(out.stem + ".partial" + out.suffix)
    try:
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        rate = stream.average_rate or Fraction(prediction.fps).limit_denominator(1001)
        codec, pix_fmt, options = _encoder_settings(width, height)
        paint = Painter(prediction.task, width, height)
        last = prediction.n_frames - 1
        with av.open(str(tmp), "w") as writer:
            encoded = writer.add_stream(codec, rate=rate, options=options)
            encoded.width, encoded.height, encoded.pix_fmt = width, height, pix_fmt
            if codec == "mpeg4":
                encoded.bit_rate = 8_000_000
            for i, frame in enumerate(container.decode(stream)):
                rgb = paint(frame.to_ndarray(format="rgb24"), prediction.values[min(i, last)])
                writer.mux(encoded.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
            writer.mux(encoded.encode())
    except av.error.FFmpegError as e:
        tmp.unlink(missing_ok=True)
        raise OverlayError(f"{source}: decoding failed while writing the overlay ({e})") from None
    finally:
        container.close()
    tmp.replace(out)
    return out
