"""Small helpers shared by several test modules (imported as `helpers`, like `fakes`)."""

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with `count` torch math threads, then restore the previous number."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def assert_same_cache(a_path: Path, b_path: Path) -> None:
    """Two caches hold the same videos, rows, features, captions and failures, array by array."""
    from fgvu.cache import open_cache

    a, b = open_cache(a_path, load_captions=True), open_cache(b_path, load_captions=True)
    for field in ("name", "split", "n_frames", "fps", "width", "height",
                  "image_offset", "text_offset", "window_offset", "frame_offset"):
        assert np.array_equal(getattr(a.videos, field), getattr(b.videos, field)), field
    for field in ("window_video", "window_start", "image_index", "caption_index", "valid", "targets",
                  "target_mask", "image_frame", "caption_frame", "image", "text"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    assert a.video.keys() == b.video.keys()
    for t in a.video:
        assert np.array_equal(a.video[t], b.video[t]), f"video T={t}"
    assert a.captions == b.captions
    assert [(f["video"], f["reason"]) for f in a.failures] == [(f["video"], f["reason"]) for f in b.failures]
