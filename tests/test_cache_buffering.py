"""Whole-shard writes: buffering videos changes how often the writer writes, never what it stores."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

import fgvu.cache.writer as writer_module
from cache_helpers import make_spec, record
from fgvu.cache import CacheError, PartWriter, open_cache, part_path
from fgvu.cache.layout import layout_of

DIMS = {"video": 64, "image": 64, "text": 64}
RECORDS = [record(f"v{i:02d}", 200 + 97 * i, i, "val" if i % 4 == 0 else "train", dim=64) for i in range(12)]


def write(path, monkeypatch, **writer_options) -> list[int]:
    """Write RECORDS into part 0; returns the committed video count after each flush."""
    flushes = []
    flush = PartWriter.flush

    def counted(self):
        before = self.commit["rows"]["videos"]
        flush(self)
        if self.commit["rows"]["videos"] != before:
            flushes.append(self.commit["rows"]["videos"])

    monkeypatch.setattr(PartWriter, "flush", counted)
    with PartWriter(path, make_spec(dims=DIMS), 0, parts=1, **writer_options) as w:
        for rec in RECORDS:
            w.append_video(rec)
        w.mark_finished()
    monkeypatch.setattr(PartWriter, "flush", flush)
    return flushes


def test_buffered_writes_store_the_same_arrays_as_video_by_video(tmp_path, monkeypatch):
    by_video = write(tmp_path / "by-video", monkeypatch, buffer_bytes=0)
    monkeypatch.setattr(writer_module, "REWRITE_FLOOR", 0)  # these videos are small: buffer them anyway
    buffered = write(tmp_path / "buffered", monkeypatch)
    assert by_video == list(range(1, len(RECORDS) + 1))
    assert len(buffered) < len(RECORDS) // 2 and buffered[-1] == len(RECORDS)  # several videos per write
    a, b = (zarr.open_group(part_path(tmp_path / name, 0), mode="r") for name in ("by-video", "buffered"))
    for spec in layout_of(make_spec(dims=DIMS)):
        x, y = np.asarray(a[spec.name][:]), np.asarray(b[spec.name][:])
        assert x.dtype == y.dtype and np.array_equal(x, y), spec.name
    for name in ("captions.jsonl", "checksums.jsonl", "commit.json"):
        assert (part_path(tmp_path / "by-video", 0) / name).read_text() == \
            (part_path(tmp_path / "buffered", 0) / name).read_text(), name
    view = open_cache(tmp_path / "buffered")
    np.testing.assert_array_equal(view.video[16][view.windows_of([11])], RECORDS[11].video[16].astype(np.float16))


def test_the_buffer_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(writer_module, "REWRITE_FLOOR", 0)
    smallest = min(rec.streams["video"][16].size * 2 for rec in RECORDS)  # its clips alone, in float16
    flushes = write(tmp_path / "bounded", monkeypatch, buffer_bytes=smallest)
    assert flushes == list(range(1, len(RECORDS) + 1))  # every video fills the buffer: written at once


def test_buffered_videos_are_committed_on_close_and_only_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(writer_module, "REWRITE_FLOOR", 0)
    path = tmp_path / "c"
    w = PartWriter(path, make_spec(dims=DIMS), 0, parts=1, buffer_bytes=1 << 30)
    for rec in RECORDS[:4]:
        w.append_video(rec)
    committed = json.loads((part_path(path, 0) / "commit.json").read_text())["rows"]["videos"]
    assert committed == 1  # three videos wait in memory: a crash now loses them, and only them
    assert len(open_cache(path, allow_partial=True).videos) == committed
    bad = record("bad", 100, 99, dim=64)
    bad.image[0, 0] = np.nan
    with pytest.raises(CacheError, match="'bad'.*NaN"):
        w.append_video(bad)  # refused on its own; the buffer is untouched
    w.close()
    view = open_cache(path, allow_partial=True)
    assert view.videos.name.tolist() == [r.name for r in RECORDS[:4]]
