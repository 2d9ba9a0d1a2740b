"""The in-memory loader: gathered batches against a slow per-sample reference, splits, normalisation, bad input."""

import dataclasses

import numpy as np
import pytest
import torch

from fgvu.cache import open_cache
from fgvu.fusion.data import DataError, FeatureData, Normalization
from fgvu.fusion.splits import train_val_videos, videos_in_split
from fgvu.sampling import SamplingPlan
from fgvu.synth.features import write_feature_cache


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return write_feature_cache(tmp_path_factory.mktemp("data") / "c", videos=10, frames=220, seed=2, dims=12,
                               plan=SamplingPlan(video_frames=(8, 16)))


@pytest.fixture
def view(cache):
    return open_cache(cache)


def video_rows_of_table(view, offsets, n_rows):
    """{video row: range of table rows} from the videos table's offsets (independent of windows)."""
    ends = np.r_[offsets[1:], n_rows]
    return {v: np.arange(offsets[v], ends[v]) for v in range(len(view.videos))}


def reference_stats(view, train_rows):
    """Per-dimension mean/std from the training videos' own table rows, computed from scratch."""
    img_rows = video_rows_of_table(view, view.videos.image_offset, len(view.image))
    txt_rows = video_rows_of_table(view, view.videos.text_offset, len(view.text))
    img = np.concatenate([view.image[img_rows[v]] for v in train_rows]).astype(np.float64)
    txt = np.concatenate([view.text[txt_rows[v]] for v in train_rows]).astype(np.float64)
    clips = np.concatenate([view.video[16][view.window_video == v] for v in train_rows]).astype(np.float64)
    clips = clips.reshape(-1, clips.shape[-1])
    return {m: (x.mean(0), x.std(0)) for m, x in (("i", img), ("t", txt), ("v", clips))}


def test_gathered_batches_equal_a_per_sample_reference(view):
    train, _ = train_val_videos(view)
    data = FeatureData(view, ("v", "i", "t"), image_frames=8, captions=2, video_frames=8)
    norm = data.fit_normalization(train)
    # the statistics cover exactly the image/caption rows the training windows read (every second one)
    for m, table, index, every in (("i", view.image, view.image_index, 2), ("t", view.text, view.caption_index, 2)):
        seen = sorted({int(index[w, k]) for w in view.windows_of(train) for k in range(0, index.shape[1], every)})
        assert len(seen) < len(np.unique(index[view.windows_of(train)]))  # a strict subset of the grid rows
        x = table[seen].astype(np.float64)
        np.testing.assert_allclose(norm.mean[m].numpy(), x.mean(0), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(norm.std[m].numpy(), x.std(0), rtol=1e-5, atol=1e-5)
    idx = torch.tensor([5, 0, 17, 3, 3, view.n_windows - 1])
    batch = data.inputs(idx, norm)
    assert {m: tuple(x.shape) for m, x in batch.items()} == {"v": (6, 8, 12), "i": (6, 8, 12), "t": (6, 2, 12)}
    for b, w in enumerate(idx.tolist()):  # one window at a time, straight from the view
        image_rows = [view.image_index[w, k] for k in range(0, 16, 2)]
        ref_i = (view.image[image_rows].astype(np.float32) - norm.mean["i"].numpy()) / norm.std["i"].numpy()
        caption_rows = [view.caption_index[w, k] for k in range(0, 4, 2)]
        ref_t = (view.text[caption_rows].astype(np.float32) - norm.mean["t"].numpy()) / norm.std["t"].numpy()
        ref_v = (view.video[8][w].astype(np.float32) - norm.mean["v"].numpy()) / norm.std["v"].numpy()
        np.testing.assert_allclose(batch["i"][b].numpy(), ref_i, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(batch["t"][b].numpy(), ref_t, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(batch["v"][b].numpy(), ref_v, rtol=1e-5, atol=1e-5)
        # the image rows really are the planned grid frames of this window
        frames = view.image_frame[image_rows]
        assert frames.tolist() == [min(view.window_start[w] + 8 * k, view.videos.n_frames[view.window_video[w]] - 1)
                                   for k in range(8)]


def test_normalisation_comes_from_training_videos_only(view):
    train, val = train_val_videos(view)
    data = FeatureData(view, ("v", "i", "t"))
    before = data.fit_normalization(train)
    stats = reference_stats(view, train)
    np.testing.assert_allclose(before.mean["v"].numpy(), stats["v"][0], rtol=1e-5, atol=1e-5)
    # wreck every non-training feature: the statistics do not move
    rows = video_rows_of_table(view, view.videos.image_offset, len(view.image))
    for v in set(range(len(view.videos))) - set(train.tolist()):
        view.image[rows[v]] = 1000.0
        view.video[16][view.window_video == v] = -1000.0
    after = FeatureData(view, ("v", "i", "t")).fit_normalization(train)
    for m in "vit":
        torch.testing.assert_close(after.mean[m], before.mean[m])
        torch.testing.assert_close(after.std[m], before.std[m])
    # and the statistics survive a round trip through flat tensors (what the checkpoint stores)
    again = Normalization.from_tensors(before.tensors())
    torch.testing.assert_close(again.mean["i"], before.mean["i"])


def test_step_targets_match_frames(view):
    data = FeatureData(view, ("i",))
    for n_steps in (16, 8):
        targets, mask = data.step_targets(n_steps)
        every = 64 // n_steps
        assert targets.shape == (view.n_windows, n_steps, 2)
        for w in range(view.n_windows):
            v = view.window_video[w]
            for k in range(n_steps):
                f = view.window_start[w] + k * every
                if f >= view.videos.n_frames[v]:
                    assert not mask[w, k].any()  # padding
                    continue
                row = view.videos.frame_offset[v] + f
                np.testing.assert_array_equal(mask[w, k].numpy(), view.target_mask[row])
                np.testing.assert_array_equal(targets[w, k].numpy()[mask[w, k].numpy()],
                                              view.targets[row][view.target_mask[row]])
    assert not mask.all() and mask.any()  # the cache has padding and invalid frames


def test_splits_are_by_video(view):
    train, val = train_val_videos(view)
    assert set(view.videos.split[train]) == {"train"} and set(view.videos.split[val]) == {"val"}
    assert not set(train.tolist()) & set(val.tolist())
    tw, vw = view.windows_of(train), view.windows_of(val)
    assert not set(view.window_video[tw].tolist()) & set(view.window_video[vw].tolist())
    # no validation videos in the cache: a seeded split of the training videos, still by video
    view.videos.split = np.where(view.videos.split == "val", "test", view.videos.split)
    t1, v1 = train_val_videos(view, val_fraction=0.34, seed=0)
    t2, v2 = train_val_videos(view, val_fraction=0.34, seed=0)
    np.testing.assert_array_equal(v1, v2)
    assert len(v1) == 2 and sorted(np.r_[t1, v1].tolist()) == sorted(train.tolist())
    assert not set(t1.tolist()) & set(v1.tolist())
    others = {tuple(train_val_videos(view, val_fraction=0.34, seed=s)[1]) for s in range(1, 6)}
    assert len(others | {tuple(v1)}) > 1  # the seed matters


def test_training_time_sampling_requests(view):
    data = FeatureData(view, ("v", "i", "t"), image_frames=8, captions=2, video_frames=8)
    assert data.lengths == {"v": 8, "i": 8, "t": 2}
    np.testing.assert_array_equal(data.index["i"].numpy(), view.image_index[:, ::2])
    np.testing.assert_array_equal(data.index["t"].numpy(), view.caption_index[:, ::2])
    with pytest.raises(DataError, match=r"T=\[8, 16\]"):
        FeatureData(view, ("v",), video_frames=32)
    with pytest.raises(DataError, match=r"16 image frames per window.*\[1, 2, 4, 8, 16\], got 5"):
        FeatureData(view, ("i",), image_frames=5)
    with pytest.raises(DataError, match="caption-every"):
        FeatureData(view, ("t",), captions=8)


def test_bad_inputs_give_clear_errors(view, tmp_path):
    with pytest.raises(DataError, match=r"unknown modality letters \['x'\]"):
        FeatureData(view, ("v", "x"))
    with pytest.raises(DataError, match="no videos in split 'holdout'.*train: 6"):
        videos_in_split(view, "holdout")
    partial = open_cache(write_feature_cache(tmp_path / "p", videos=3, frames=100, dims={"image": 8, "video": 8}))
    with pytest.raises(DataError, match=r"no t \(text\) features; it has: v \(video\), i \(image\)"):
        FeatureData(partial, ("v", "i", "t"))
    # NaN or Inf features name the video they belong to
    target = 4
    lo = view.videos.image_offset[target]
    view.image[lo + 2, 3] = np.nan
    with pytest.raises(DataError, match=f"video '{view.videos.name[target]}' has NaN or Inf image features"):
        FeatureData(view, ("i",))
    clips = view.video[16]
    w = view.windows_of([7])[1]
    clips[w, 0, 0] = np.inf
    with pytest.raises(DataError, match=f"video '{view.videos.name[7]}' has NaN or Inf video features"):
        FeatureData(view, ("v",))
    no_train = dataclasses.replace(view, videos=dataclasses.replace(
        view.videos, split=np.where(view.videos.split == "train", "val", view.videos.split)))
    with pytest.raises(DataError, match="no videos in split 'train'"):
        train_val_videos(no_train)


def test_validation_split_must_exist_and_differ_from_train(view):
    with pytest.raises(DataError, match="cannot be 'train'"):
        train_val_videos(view, val_split="train")
    with pytest.raises(DataError, match=r"no videos in validation split 'dev'.*train: 6"):
        train_val_videos(view, val_split="dev")
    # issue 10: validating (and so possibly early-stopping) on the test split is refused
    with pytest.raises(DataError, match="--val-split test is refused.*--report-split test"):
        train_val_videos(view, val_split="test")
    # only the default "val" falls back to a hold-out of the training videos
    no_val = dataclasses.replace(view, videos=dataclasses.replace(
        view.videos, split=np.where(view.videos.split == "val", "test", view.videos.split)))
    t, v = train_val_videos(no_val, val_fraction=0.34)
    assert set(no_val.videos.split[np.r_[t, v]]) == {"train"} and not set(t.tolist()) & set(v.tolist())


@pytest.mark.parametrize("shape", [(900, 7), (300, 4, 7)])
def test_normalisation_moments_in_float32_chunks_match_float64(monkeypatch, shape):
    import fgvu.fusion.data as data_mod

    rng = np.random.default_rng(0)
    # a large mean against a small spread, per dimension, as raw encoder features can have
    table = (rng.normal(size=shape) * rng.uniform(0.05, 2.0, shape[-1]) + rng.uniform(-60, 60, shape[-1]))
    table = table.astype(np.float16)
    rows = np.sort(rng.choice(shape[0], size=shape[0] * 2 // 3, replace=False))
    reference = table[rows].reshape(-1, shape[-1]).astype(np.float64)
    monkeypatch.setattr(data_mod, "SCAN_VALUES", 97)  # many chunks, with an uneven last one
    mean, std = data_mod._moments(table, rows)
    np.testing.assert_allclose(mean, reference.mean(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(std, reference.std(0), rtol=1e-5)
    empty_mean, empty_std = data_mod._moments(table, rows[:0])
    assert (empty_mean == 0).all() and (empty_std == 0).all()
