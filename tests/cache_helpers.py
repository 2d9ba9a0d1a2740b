"""Small caches written straight through `PartWriter`, with random float16 features (imported as `cache_helpers`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fgvu.cache import CacheSpec, PartWriter, VideoRecord
from fgvu.sampling import SamplingPlan

PLAN = SamplingPlan()
DIMS = {"video": 8, "image": 8, "text": 8}


def make_spec(**kw) -> CacheSpec:
    base = dict(dataset="synthetic", task="va", sampling=PLAN, dims=DIMS, caption_prompt="Describe.",
                encoders={"video": {"name": "fake-v", "checkpoint": "random-init:0"}})
    return CacheSpec(**{**base, **kw})


def record(name: str, n: int, seed: int, split: str = "train", plan: SamplingPlan = PLAN, dim: int = 8) -> VideoRecord:
    """A whole video of random features (float64 here, float16 once written) and targets in [-1, 1]."""
    rng = np.random.default_rng(seed)
    lay = plan.layout(n)
    return VideoRecord(
        name=name, split=split, n_frames=n, fps=25.0, width=32, height=24,
        window_start=lay.starts, image_index=lay.image_index, caption_index=lay.caption_index, valid=lay.valid,
        targets=rng.uniform(-1, 1, (n, 2)), target_mask=rng.random((n, 2)) > 0.1,
        image=rng.normal(size=(len(lay.image_frames), dim)), image_frame=lay.image_frames,
        text=rng.normal(size=(len(lay.caption_frames), dim)), caption_frame=lay.caption_frames,
        captions=[f"{name} caption {f}" for f in lay.caption_frames],
        video={t: rng.normal(size=(lay.n_windows, t, dim)) for t in plan.video_frames},
    )


VIDEOS = [("a", 230, "train"), ("b", 170, "val"), ("c", 200, "train"), ("d", 150, "val"), ("e", 190, "train")]


def write_cache(path: Path, spec: CacheSpec | None = None, plan: SamplingPlan = PLAN, videos=VIDEOS) -> Path:
    """Two finished parts of a partition into K = 2, the videos alternating between them."""
    spec = spec or make_spec()
    for part in (0, 1):
        with PartWriter(path, spec, part, parts=2) as w:
            for i, (name, n, split) in enumerate(videos):
                if i % 2 == part:
                    w.append_video(record(name, n, i, split, plan))
            w.mark_finished()
    return path
