"""Caches written by fgvu 0.1 (tests/fixtures/cache-v1, made by its synthetic writer) stay readable."""

import shutil
from pathlib import Path

import numpy as np

from fgvu.cache import PartWriter, open_cache, read_spec
from fgvu.cache.verify import verify_cache

FIXTURES = Path(__file__).parent / "fixtures"


def test_a_cache_written_by_the_previous_version_reads_the_same(tmp_path):
    cache = shutil.copytree(FIXTURES / "cache-v1", tmp_path / "cache")
    expected = np.load(FIXTURES / "cache-v1-expected.npz")
    view = open_cache(cache, load_captions=True)
    for key, value in (("image", view.image), ("text", view.text), ("video16", view.video[16]),
                       ("video8", view.video[8]), ("targets", view.targets), ("mask", view.target_mask),
                       ("image_index", view.image_index), ("caption_index", view.caption_index),
                       ("starts", view.window_start)):
        np.testing.assert_array_equal(value, expected[key], err_msg=key)
    assert len(view.captions) == len(view.text) and view.modalities == ("v", "i", "t")
    assert verify_cache(cache) == []
    # and the current writer resumes it: a new part appends next to the old one
    with PartWriter(cache, read_spec(cache), 1) as writer:
        assert writer.committed_videos == set()
    assert open_cache(cache).n_windows == view.n_windows
