"""open_cache loads only what a run uses, into arrays filled shard by shard."""

import numpy as np
import pytest

from fgvu.cache import open_cache
from fgvu.sampling import SamplingPlan
from fgvu.synth.features import write_feature_cache

DIMS = {"video": 6, "image": 5, "text": 4}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return write_feature_cache(tmp_path_factory.mktemp("reader") / "c", videos=6, frames=200, seed=1, dims=DIMS,
                               plan=SamplingPlan(video_frames=(8, 16, 32)))


def _arrays_of(view) -> list[np.ndarray]:
    """Every array a view holds: its fields, its stream arrays and the clips of every length."""
    found = [getattr(view, k) for k in ("window_video", "window_start", "valid", "targets", "target_mask")]
    found += [getattr(view.videos, k) for k in view.videos.__dataclass_fields__]
    for value in view.arrays.values():
        found += list(value.values()) if isinstance(value, dict) else [value]
    return found


def test_a_run_at_t16_holds_no_8_or_32_frame_clips(cache):
    full = open_cache(cache)
    assert sorted(full.video) == [8, 16, 32]
    view = open_cache(cache, modalities=("v", "i"), video_frames=(16,))
    assert sorted(view.video) == [16]
    assert view.text is None and view.image is not None
    clips = [a for a in _arrays_of(view) if a.ndim == 3]
    assert len(clips) == 1 and clips[0].shape == (view.n_windows, 16, DIMS["video"])
    np.testing.assert_array_equal(view.video[16], full.video[16])
    np.testing.assert_array_equal(view.image, full.image)
    # it holds exactly the full view's bytes less the other clip lengths and the text table
    held = sum(a.nbytes for a in _arrays_of(view))
    dropped = full.video[8].nbytes + full.video[32].nbytes + full.text.nbytes
    assert held == sum(a.nbytes for a in _arrays_of(full)) - dropped
