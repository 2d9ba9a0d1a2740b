import json

import numpy as np
import pytest
import zarr

from fgvu.cache import (
    CacheError, CacheSpec, PartWriter, VideoRecord, open_cache, part_path, read_spec,
)
from fgvu.sampling import SamplingPlan

PLAN = SamplingPlan(video_frames=(8, 16))
DIMS = {"video": 6, "image": 5, "text": 4}


def spec(**kw):
    base = dict(dataset="synthetic", task="va", sampling=PLAN, dims=DIMS,
                encoders={"video": {"name": "fake-v", "checkpoint": "random-init:0"}})
    return CacheSpec(**{**base, **kw})


def record(name, n, seed=0, split="train"):
    rng = np.random.default_rng(seed)
    lay = PLAN.layout(n)
    w = lay.n_windows
    return VideoRecord(
        name=name, split=split, n_frames=n, fps=25.0, width=32, height=24,
        window_start=lay.starts, image_index=lay.image_index, caption_index=lay.caption_index, valid=lay.valid,
        targets=rng.uniform(-1, 1, (n, 2)), target_mask=rng.random((n, 2)) > 0.1,
        image=rng.normal(size=(len(lay.image_frames), 5)), image_frame=lay.image_frames,
        text=rng.normal(size=(len(lay.caption_frames), 4)), caption_frame=lay.caption_frames,
        captions=[f"{name} caption {f}" for f in lay.caption_frames],
        video={t: rng.normal(size=(w, t, 6)) for t in PLAN.video_frames},
    )


def test_round_trip_across_parts(tmp_path):
    recs = [record("a", 250, 1), record("b", 10, 2, "val"), record("c", 130, 3)]
    with PartWriter(tmp_path, spec(), 0) as w:
        w.append_video(recs[0])
        w.append_video(recs[1])
    with PartWriter(tmp_path, spec(), 1) as w:
        w.append_video(recs[2])
    view = open_cache(tmp_path, load_captions=True)
    assert view.videos.name.tolist() == ["a", "b", "c"]
    assert view.videos.split.tolist() == ["train", "val", "train"]
    assert view.videos.frame_offset.tolist() == [0, 250, 260]
    assert view.n_windows == 13 + 1 + 6  # 130 frames: 5 full windows + 1 padded
    for r, rec in enumerate(recs):
        wins = view.windows_of([r])
        assert (view.window_start[wins] == rec.window_start).all()
        # cache-global indices point at this video's rows, equal to what was written (f16)
        img = view.image[view.image_index[wins]]
        np.testing.assert_allclose(img, rec.image[rec.image_index].astype(np.float16))
        txt = view.text[view.caption_index[wins]]
        np.testing.assert_allclose(txt, rec.text[rec.caption_index].astype(np.float16))
        np.testing.assert_allclose(view.video[8][wins], rec.video[8].astype(np.float16))
        f0 = view.videos.frame_offset[r]
        np.testing.assert_array_equal(view.targets[f0 : f0 + rec.n_frames], rec.targets.astype(np.float32))
        np.testing.assert_array_equal(view.target_mask[f0 : f0 + rec.n_frames], rec.target_mask)
    assert [c["text"] for c in view.captions if c["video"] == "c"] == recs[2].captions


def test_uncommitted_rows_are_ignored_and_truncated_on_resume(tmp_path):
    with PartWriter(tmp_path, spec(), 0) as w:
        w.append_video(record("a", 100, 1))
    clean = open_cache(tmp_path)
    # a crash mid-video: rows written, commit.json not updated
    group = zarr.open_group(part_path(tmp_path, 0), mode="a")
    arr = group["frames/image"]
    arr.resize((arr.shape[0] + 7, 5))
    arr[-7:] = np.ones((7, 5))
    with open(part_path(tmp_path, 0) / "captions.jsonl", "a") as f:
        f.write('{"video": "half", "frame": 0, "text": "partial"}\n')
    view = open_cache(tmp_path, load_captions=True)
    assert view.image.shape == clean.image.shape
    assert all(c["video"] == "a" for c in view.captions)
    with PartWriter(tmp_path, spec(), 0) as w:
        assert w.arrays["frames/image"].shape[0] == clean.image.shape[0]
        assert w.committed_videos == {"a"}
        w.append_video(record("b", 70, 2))
    view = open_cache(tmp_path, load_captions=True)
    assert view.videos.name.tolist() == ["a", "b"]
    assert not any(c["video"] == "half" for c in view.captions)
    np.testing.assert_array_equal(view.image[: clean.image.shape[0]], clean.image)


def test_append_with_other_encoder_or_plan_is_refused(tmp_path):
    PartWriter(tmp_path, spec(), 0).close()
    other = spec(encoders={"video": {"name": "other", "checkpoint": "sha"}})
    with pytest.raises(CacheError, match="encoder 'video'"):
        PartWriter(tmp_path, other, 1)
    with pytest.raises(CacheError, match="sampling plan"):
        PartWriter(tmp_path, spec(sampling=SamplingPlan(stride=32, video_frames=(8, 16))), 1)


def test_second_writer_on_a_part_is_locked_out(tmp_path):
    with PartWriter(tmp_path, spec(), 0):
        with pytest.raises(CacheError, match="being written by another process"):
            PartWriter(tmp_path, spec(), 0)
    PartWriter(tmp_path, spec(), 0).close()  # released


def test_record_checks_name_the_video(tmp_path):
    rec = record("bad", 100)
    rec.image[3, 1] = np.nan
    with PartWriter(tmp_path, spec(), 0) as w, pytest.raises(CacheError, match="'bad'.*NaN"):
        w.append_video(rec)
    rec = record("short", 100)
    rec.targets = rec.targets[:50]
    with PartWriter(tmp_path, spec(), 0) as w, pytest.raises(CacheError, match="'short'.*targets shape"):
        w.append_video(rec)


def test_failures_are_kept(tmp_path):
    with PartWriter(tmp_path, spec(), 0) as w:
        w.record_failure("broken.mp4", "empty file")
    assert open_cache(tmp_path).failures == [{"video": "broken.mp4", "reason": "empty file", "part": "part-00000.zarr"}]


def test_bad_caches_give_clear_errors(tmp_path):
    with pytest.raises(CacheError, match="no such directory"):
        open_cache(tmp_path / "nope")
    tmp_path.joinpath("empty").mkdir()
    with pytest.raises(CacheError, match="cache.json is missing"):
        open_cache(tmp_path / "empty")
    with PartWriter(tmp_path / "c", spec(), 0) as w:
        w.append_video(record("a", 80))
    meta = tmp_path / "c" / "cache.json"
    good = meta.read_text()
    meta.write_text("{not json")
    with pytest.raises(CacheError, match="corrupt"):
        read_spec(tmp_path / "c")
    meta.write_text(json.dumps({**json.loads(good), "schema_version": 99}))
    with pytest.raises(CacheError, match="schema version 99"):
        open_cache(tmp_path / "c")
    meta.write_text(json.dumps({**json.loads(good), "dims": {**DIMS, "image": 9}}))
    # the part's stamp names the difference (before issue 14: "frames/image has rows of shape")
    with pytest.raises(CacheError, match=r"written under another cache.json \(dims: cache.json has .*'image': 9"):
        open_cache(tmp_path / "c")
    meta.write_text(good)
    import shutil
    shutil.rmtree(part_path(tmp_path / "c", 0) / "frames" / "text")
    with pytest.raises(CacheError, match="missing array frames/text"):
        open_cache(tmp_path / "c")


def test_cache_without_text_modality(tmp_path):
    dims = {"video": 6, "image": 5}
    rec = record("a", 90)
    rec.text, rec.captions = None, None
    with PartWriter(tmp_path, spec(dims=dims), 0) as w:
        w.append_video(rec)
    view = open_cache(tmp_path)
    assert view.modalities == ("v", "i")
    assert view.text is None and view.caption_frame.shape == (len(rec.caption_frame),)


def test_a_video_that_succeeds_later_leaves_the_failure_list(tmp_path):
    with PartWriter(tmp_path, spec(), 0) as w:
        w.record_failure("a", "decoder crashed")
        w.record_failure("b", "empty file")
        w.append_video(record("a", 70))
    assert [f["video"] for f in open_cache(tmp_path).failures] == ["b"]


def test_leftover_partial_files_are_removed(tmp_path):
    with PartWriter(tmp_path, spec(), 0) as w:
        w.append_video(record("a", 70))
    junk = part_path(tmp_path, 0) / "frames" / "image" / "c" / "0.partial"
    junk.parent.mkdir(parents=True, exist_ok=True)
    junk.write_bytes(b"x")
    PartWriter(tmp_path, spec(), 0).close()
    assert not junk.exists()


def test_concurrent_writers_never_see_a_half_written_cache_json(tmp_path):
    # the second writer arrives after cache.json exists: it must read a complete spec
    with PartWriter(tmp_path, spec(), 0):
        with PartWriter(tmp_path, spec(), 1) as w:
            assert w.spec == spec()
    assert not list(tmp_path.glob(".cache.json.*"))  # temporary files are cleaned up


def test_failed_open_releases_the_part_lock(tmp_path):
    with PartWriter(tmp_path, spec(), 0) as w:
        w.append_video(record("a", 70))
    group = zarr.open_group(part_path(tmp_path, 0), mode="a")
    del group["frames/image"]
    group.create_array("frames/image", shape=(0, 9), dtype="float16")  # wrong row shape
    with pytest.raises(CacheError, match="frames/image has rows"):
        PartWriter(tmp_path, spec(), 0)
    with pytest.raises(CacheError, match="frames/image has rows"):  # not "being written by another process"
        PartWriter(tmp_path, spec(), 0)


def test_empty_cache_has_typed_video_columns(tmp_path):
    PartWriter(tmp_path, spec(), 0).close()
    view = open_cache(tmp_path)
    assert len(view.videos) == 0 and view.videos.n_frames.dtype == np.int64


def test_stride_longer_than_the_window_is_refused():
    from fgvu.sampling import SamplingError
    with pytest.raises(SamplingError, match="longer than the window"):
        SamplingPlan(stride=100)
