"""Stage-1 configuration: the single source of truth for extraction defaults.

Each field is one `fgvu extract` option (`--stride` -> `ExtractConfig.stride`, `--caption-every`
-> `caption_every`, ...), declared once with `fgvu.options.opt`: its help, choices and range live
here. A `fgvu.toml` in the working directory can override the defaults in its `[extract]` section.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, replace
from pathlib import Path
from typing import Literal

from fgvu.cache.location import absolute, cache_path
from fgvu.errors import FgvuError
from fgvu.extract.datasets import ADAPTERS
from fgvu.extract.encoders import CAPTION_BATCH
from fgvu.extract.encoders.registry import ENCODER_SETS, THREADS
from fgvu.options import QUIET_HELP, int_list, opt
from fgvu.sampling import SamplingPlan
from fgvu.settings import paths
from fgvu.tasks import TASKS

DATASETS = tuple(sorted(ADAPTERS))
ENGINES = ("local", "ray")


class ExtractConfigError(FgvuError):
    """Extraction options that contradict each other."""


@dataclass(frozen=True)
class ExtractConfig:
    """Everything `fgvu extract` needs. Paths left as None resolve through `fgvu.settings`."""

    dataset: str = opt(MISSING, "Dataset layout.", choices=DATASETS)
    root: str | None = opt(None, "Dataset root.", shown="$FGVU_DATA/<dataset>, else data/<dataset>")
    out: str | None = opt(None, "Cache directory to create or resume, or a store URL (s3://bucket/cache, gs://..., "
                                "any fsspec URL).", shown="caches/<dataset>")
    # encoders: a named set, and optional per-role overrides
    encoders: str = opt("paper", "Encoder set: paper (VideoPrism-B, CLIP ViT-L-14, MiniGPT-4), paper+audio (the "
                        "same and WavLM-base+) or tiny (random weights, audio included, for tests and the demo).",
                        choices=tuple(ENCODER_SETS))
    video_encoder: str | None = opt(None, "Override the set's video encoder (e.g. videoprism-large).")
    image_encoder: str | None = opt(None, "Override the set's CLIP image/text encoder (e.g. clip:ViT-B-16).")
    captioner: str | None = opt(None, "Override the set's captioner (e.g. captioner:/path/to/blip2).")
    audio_encoder: str | None = opt(None, "Audio encoder: audio:wavlm-base-plus, audio:wav2vec2-base, "
                                    "audio:hubert-base (optionally :/local/dir), audio:/local/dir, audio-tiny, or "
                                    "none for no audio.",
                                    shown="the set's; none for paper")
    device: str = opt("auto", "auto, cpu, cuda or cuda:N.")
    # sampling plan (window 64 and image grid every 4 frames are fixed by the paper)
    stride: int = opt(16, "Frames between window starts (windows are 64 frames).", ge=1)
    caption_every: int = opt(16, "Caption-grid spacing in frames: 16 gives 4 captions per window, 8 gives 8.", ge=1)
    video_frames: tuple[int, ...] = opt((16,), "VideoPrism clip lengths to cache, comma-separated, e.g. 8,16,32 "
                                        "(one array each).", ge=1, parse=int_list)
    # captions
    caption_prompt: str | None = opt(None, "Captioner prompt.", shown="the dataset's prompt")
    max_new_tokens: int = opt(30, "Longest caption, in tokens.", ge=1)
    reuse_captions: str | None = opt(None, "Take the captions from this cache (or 'auto' for caches/<dataset>) "
                                     "instead of captioning again, e.g. to change only the text encoder. Needs a "
                                     "new --out.")
    # adding a stream to an existing cache
    only: Literal["audio"] | None = opt(None, "Compute only this stream and add it to the committed videos of the "
                                        "cache --into names; the other encoders do not run.", shown="every stream")
    into: str | None = opt(None, "With --only: the existing cache to add the stream to (resumable).")
    # dataset adapter options
    frames: Literal["auto", "video", "cropped_aligned"] = opt(
        "auto", "aff-wild2 only: what each track's encoders see. auto: its own cropped_aligned/<track>/ face "
        "crops when that folder exists, else its video; cropped_aligned: only crops; video: only videos. From a "
        "video, _left/_right tracks each see their half of the frame.")
    image_resize: Literal["pad", "squash", "center-crop"] = opt(
        "pad", "How CLIP fits a frame into its square input: pad (keep the whole frame, letterboxed), squash "
        "(stretch it) or center-crop (CLIP's own eval transform, which cuts the sides off a 16:9 frame). Square "
        "face crops are the same under all three. Recorded in the encoder fingerprint.")
    labels: str | None = opt(None, "folder only: the labels CSV.", shown="ROOT/labels.csv")
    task: str | None = opt(None, "folder only: the task; a folder without any labels needs it and is extracted "
                           "unlabelled (targets all masked, split test, for `fgvu predict`).", choices=tuple(TASKS),
                           shown="inferred from the labels")
    limit: int | None = opt(None, "Extract only the first N videos (by name); for quick trials.", ge=1,
                            shown="every video")
    # distribution
    parts: int = opt(1, "Split the videos into K parts, one writer each.", ge=1)
    part: int | None = opt(None, "Run only part k (0-based), e.g. from a SLURM array task.", ge=0,
                           shown="every part")
    lease_seconds: float = opt(60.0, "Caches on an object store: how long a writer's lease on its part lasts "
                               "unless renewed (every third of it); after a crash, a re-run waits this long.", ge=1)
    engine: Literal["local", "ray"] = opt("local", "local (this process and its decoder processes) or ray (Ray Data: "
                                          "decoding in CPU tasks, each encoder in its own actor pool; "
                                          "pip install 'fgvu\\[ray]'). Joins the cluster at $RAY_ADDRESS, else "
                                          "starts one on this machine.")
    decode_workers: int = opt(1, "local engine: decoder processes feeding the encoders (1: a decode thread "
                              "in the encoder process). More keep a GPU busy when decoding is the bottleneck.", ge=1)
    max_retries: int = opt(3, "ray engine: retries of a decode task or an encoder call that fails (exceptions "
                           "and lost workers); videos still failing are listed in the summary.", ge=0)
    ray_encoder_actors: int = opt(1, "ray engine: VideoPrism actors, and as many CLIP actors.", ge=1)
    ray_captioners: int = opt(1, "ray engine: captioner actors (the captioner is the slowest encoder: scale it "
                              "on its own).", ge=1)
    encoder_gpus: float | None = opt(None, "ray engine: GPUs per VideoPrism and per CLIP actor; fractions share "
                                     "a card.", ge=0, shown="0.25 when the cluster has GPUs and --device is not cpu, "
                                     "else 0")
    caption_gpus: float | None = opt(None, "ray engine: GPUs per captioner actor.", ge=0,
                                     shown="0.5 when the cluster has GPUs and --device is not cpu, else 0")
    # throughput
    image_batch: int = opt(64, "Frames per CLIP image call.", ge=1)
    clip_batch: int = opt(8, "Clips per VideoPrism call.", ge=1)
    # 7B MiniGPT-4 on an H200: 54 captions/s at 64 vs 22 at 16
    caption_batch: int = opt(CAPTION_BATCH, "Frames per captioner call.", ge=1)
    text_batch: int = opt(256, "Captions per CLIP text call.", ge=1)
    audio_batch: int = opt(8, "Audio chunks (20 s of sound each for the real speech models) per audio-encoder "
                           "call.", ge=1)
    prefetch: int = opt(64, "Decoded frames buffered ahead of the encoders.", ge=1)
    threads: int | None = opt(None, "Torch math threads of the encoders.", ge=1,
                              shown="1 for the tiny set, torch's default (every core) for paper")
    progress: bool = opt(True, QUIET_HELP, flag="--quiet", inverted=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "video_frames", tuple(int(t) for t in self.video_frames))
        if self.dataset not in DATASETS:
            raise ExtractConfigError(f"unknown dataset {self.dataset!r}; known: {', '.join(DATASETS)}")
        if self.engine not in ENGINES:
            raise ExtractConfigError(f"unknown engine {self.engine!r}; known: {', '.join(ENGINES)}")
        if self.parts < 1:
            raise ExtractConfigError(f"--parts must be at least 1, got {self.parts}")
        if self.part is not None and not 0 <= self.part < self.parts:
            raise ExtractConfigError(f"--part must be in 0..{self.parts - 1} for --parts {self.parts}, got {self.part}")
        if self.limit is not None and self.limit < 1:
            raise ExtractConfigError(f"--limit must be at least 1, got {self.limit}")
        if (self.only is None) != (self.into is None):
            raise ExtractConfigError("--only and --into go together: --only audio --into CACHE adds audio to CACHE")
        if self.only is not None and self.out is not None:
            raise ExtractConfigError("--only adds to the cache --into names; drop --out")
        if self.only is not None and self.audio_encoder == "none":
            raise ExtractConfigError("--only audio with --audio-encoder none has nothing to do")
        for name in ("image_batch", "clip_batch", "caption_batch", "text_batch", "audio_batch", "prefetch",
                     "max_new_tokens", "decode_workers", "ray_encoder_actors", "ray_captioners"):
            if getattr(self, name) < 1:
                raise ExtractConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("max_retries", "encoder_gpus", "caption_gpus"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ExtractConfigError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.threads is not None and self.threads < 1:
            raise ExtractConfigError(f"--threads must be at least 1, got {self.threads}")
        self.sampling  # validates the plan early, with the sampling module's message

    @property
    def sampling(self) -> SamplingPlan:
        """The sampling plan these options describe."""
        return SamplingPlan(stride=self.stride, caption_every=self.caption_every, video_frames=self.video_frames)

    @property
    def root_path(self) -> Path:
        """The dataset root: --root, else $FGVU_DATA/<dataset> or data/<dataset>."""
        return Path(self.root) if self.root else paths().data_root(self.dataset)

    @property
    def out_path(self):
        """The cache location (a Path, or a StorePath for a URL): --out, else <caches>/<dataset>."""
        return cache_path(self.out) if self.out else Path(paths().caches) / self.dataset

    @property
    def into_path(self):
        """The cache --only adds to (a Path or a StorePath), or None."""
        return cache_path(self.into) if self.into is not None else None

    @property
    def reuse_captions_path(self) -> Path | None:
        """The cache whose captions are reused, or None."""
        if self.reuse_captions is None:
            return None
        if self.reuse_captions == "auto":
            return Path(paths().caches) / self.dataset
        return cache_path(self.reuse_captions)

    def with_absolute_paths(self) -> "ExtractConfig":
        """This configuration with every path resolved against this process's working directory.

        Remote workers (Ray, another node) run elsewhere: a relative --out or --root must mean
        what it means where the user typed it.
        """
        labels = str(Path(self.labels).resolve()) if self.labels else None
        reuse = self.reuse_captions_path
        return replace(self, root=str(self.root_path.resolve()), out=absolute(self.out_path), labels=labels,
                       reuse_captions=absolute(reuse) if reuse is not None else None)
    @property
    def torch_threads(self) -> int | None:
        """--threads, else the encoder set's choice (`THREADS`); None keeps torch's default."""
        return self.threads if self.threads is not None else THREADS.get(self.encoders)

    def parts_to_run(self) -> list[int]:
        """The part numbers this configuration runs."""
        return list(range(self.parts)) if self.part is None else [self.part]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["video_frames"] = list(self.video_frames)
        return d
