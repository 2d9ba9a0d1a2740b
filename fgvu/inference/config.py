"""The options of `fgvu predict` on raw videos and of `fgvu stream`, declared once (fgvu.options).

Each field is one command-line option; `fgvu.commands.infer` generates the options from them.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass

from fgvu.inference.stream_captions import POLICIES
from fgvu.options import QUIET_HELP, opt


@dataclass(frozen=True, kw_only=True)
class RunEncoderOptions:
    """How to rebuild a run's encoders, shared by predict and stream."""

    device: str = opt("auto", "auto, cpu, cuda or cuda:N, for the encoders and the fusion head.")
    video_encoder: str | None = opt(None, "Build this video encoder instead of the one the run's cache records, "
                                    "e.g. videoprism-base:/path/flax_base_f16r288_repeated.npz for local weights.",
                                    shown="the run's")
    image_encoder: str | None = opt(None, "Build this CLIP image/text encoder instead of the recorded one, e.g. "
                                    "clip:ViT-L-14:/path/open_clip_model.bin.", shown="the run's")
    captioner: str | None = opt(None, "Build this captioner instead of the recorded one, e.g. "
                                "captioner:minigpt4:/path/to/converted.", shown="the run's")
    audio_encoder: str | None = opt(None, "Build this audio encoder instead of the recorded one (a run that reads "
                                    "audio), e.g. audio:wavlm-base-plus:/path/to/dir or audio:/path/to/model-dir.",
                                    shown="the run's")
    cache_spec: str | None = opt(None, "A cache (or its cache.json) made like the run's training cache, when that "
                                 "cache has moved: its encoders, sampling plan and prompt are used.",
                                 shown="the run's training cache")
    progress: bool = opt(True, QUIET_HELP, flag="--quiet", inverted=True)

    def encoder_options(self) -> dict:
        """The keyword arguments of `Predictor.from_run` these options give."""
        return {"device": self.device, "cache_spec": self.cache_spec, "video_encoder": self.video_encoder,
                "image_encoder": self.image_encoder, "captioner": self.captioner,
                "audio_encoder": self.audio_encoder}


@dataclass(frozen=True, kw_only=True)
class PredictConfig(RunEncoderOptions):
    """`fgvu predict RUN VIDEO... | --videos DIR`."""

    videos: str | None = opt(None, "Also predict every video under this folder (named by their path inside it, "
                             "as --dataset folder names them).", shown="only the VIDEO files given")
    overlay: str | None = opt(None, "Also write each video with its predictions drawn on every frame: an .mp4 file "
                              "for one video, a folder (one <video>.mp4 each) for several.", shown="no overlay")
    thumbnails: int = opt(6, "Thumbnails along each timeline's time axis (0: none).", ge=0)
    keep_features: str | None = opt(None, "Keep the extracted features in this cache folder: a re-run resumes it, "
                                    "and `fgvu predict RUN --cache` reads it.", shown="a temporary cache, removed")


@dataclass(frozen=True, kw_only=True)
class StreamConfig(RunEncoderOptions):
    """`fgvu stream RUN --source FILE|URL|/dev/videoN`."""

    source: str = opt(MISSING, "A video file, an RTSP/HTTP URL or a V4L2 device (/dev/videoN).")
    out: str | None = opt(None, "Folder for the per-frame CSV (as `fgvu predict` writes it), windows.csv and "
                          "latency.json.", shown="RUN/stream-<source name>")
    lookahead: int | None = opt(None, "Frames a prediction may wait for later windows; 0 is strictly causal. By "
                                "default a frame waits for every window covering it (and, reading audio, for "
                                "its sound chunks): `fgvu predict`'s values. With N, audio heard so far is used.",
                                ge=0, shown="every covering window")
    realtime: bool = opt(False, "Play a file at its native frame rate and drop frames when processing falls "
                         "behind (URLs and devices always drop when behind).", flag="--realtime")
    latency_budget: float | None = opt(None, "Milliseconds a window may take. With --captions auto the captioner "
                                       "leaves the critical path when a window with its caption would take longer: "
                                       "it runs asynchronously, or not at all.", gt=0, shown="none")
    captions: str = opt("auto", "When the captioner runs: inline (in the window's critical path, every "
                        "--caption-windows windows), async (in a background thread; windows read the latest "
                        "caption), none, or auto (inline without a budget; with one, inline if it fits, else "
                        "async, else none).", choices=POLICIES)
    caption_windows: int = opt(1, "With inline captions: caption only every N-th window (its newest caption "
                               "frame); the other windows reuse the latest caption.", ge=1)
    stall_timeout: float = opt(10.0, "End the stream cleanly when no frame arrives for this many seconds.", gt=0)
    max_frames: int | None = opt(None, "Stop after this many frames.", ge=1, shown="the whole stream")
    thumbnails: int = opt(6, "Thumbnails along the timeline of a file source (0: none).", ge=0)
