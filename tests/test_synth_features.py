"""Synthetic feature caches: valid, varied, and carrying a signal that only fusion fully explains."""

import numpy as np
import pytest

from fgvu.cache import CacheError, open_cache
from fgvu.sampling import SamplingPlan
from fgvu.synth.features import write_feature_cache


@pytest.fixture(scope="module")
def va_cache(tmp_path_factory):
    return write_feature_cache(tmp_path_factory.mktemp("synth") / "va", task="va", videos=20, frames=400, seed=3)


def test_cache_is_valid_and_varied(va_cache):
    view = open_cache(va_cache, load_captions=True)
    assert view.spec.task == "va" and view.spec.dataset == "synthetic-va"
    assert view.spec.dims == {"video": 48, "image": 48, "text": 32}
    assert len(view.videos) == 20
    splits = dict(zip(*np.unique(view.videos.split, return_counts=True)))
    assert splits == {"train": 12, "val": 4, "test": 4}
    n = view.videos.n_frames
    assert n.min() < view.spec.sampling.window  # one video is shorter than a window ...
    short = int(np.argmin(n))
    assert len(view.windows_of([short])) == 1 and not view.valid[view.windows_of([short])[0]].all()  # ... padded
    assert len(set(n.tolist())) > 10  # lengths vary
    assert np.isfinite(view.image.astype(np.float32)).all() and np.isfinite(view.video[16].astype(np.float32)).all()
    assert len(view.captions) == len(view.text) and all(isinstance(c["text"], str) for c in view.captions)
    # a few videos have invalid frames, marked -5 and masked
    invalid = ~view.target_mask.all(axis=1)
    assert 0 < invalid.sum() < 0.05 * len(invalid)
    assert (view.targets[invalid] == -5).all()
    offsets = view.videos.frame_offset
    with_invalid = {int(np.searchsorted(offsets, f, side="right") - 1) for f in np.flatnonzero(invalid)}
    assert {view.videos.split[v] for v in with_invalid} == {"train", "val"}
    valid = view.targets[~invalid]
    assert valid.min() >= -1 and valid.max() <= 1 and valid.std(axis=0).min() > 0.3


def test_targets_are_smooth_in_time(va_cache):
    view = open_cache(va_cache)
    v = int(np.argmax(view.videos.n_frames))
    lo = view.videos.frame_offset[v]
    y = view.targets[lo : lo + view.videos.n_frames[v]]
    y = y[(y > -5).all(axis=1)]
    # neighbouring frames differ far less than random pairs of frames
    assert np.abs(np.diff(y, axis=0)).mean() < 0.1 * np.abs(y - y.mean(axis=0)).mean()


def _ridge_ccc(view, mods):
    """Validation CCC of a per-step linear ridge fit on the training videos (an independent learner)."""
    feats = {"i": lambda w: view.image[view.image_index[w]], "v": lambda w: view.video[16][w],
             "a": lambda w: view.audio[view.image_index[w]],
             "t": lambda w: np.repeat(view.text[view.caption_index[w]], 4, axis=1)}

    def table(split):
        w = view.windows_of(np.flatnonzero(view.videos.split == split))
        x = np.concatenate([feats[m](w).astype(np.float64) for m in mods], axis=-1)
        frames = view.window_start[w][:, None] + 4 * np.arange(16)
        ok = view.valid[w][:, ::4]
        rows = view.videos.frame_offset[view.window_video[w]][:, None] + frames
        x, rows = x[ok], rows[ok]
        keep = view.target_mask[rows].all(axis=1)
        return np.c_[x[keep], np.ones(keep.sum())], view.targets[rows[keep]]

    x, y = table("train")
    mu, sd = x.mean(0), x.std(0) + 1e-6
    mu[-1], sd[-1] = 0, 1
    x = (x - mu) / sd
    w = np.linalg.solve(x.T @ x + 10 * np.eye(x.shape[1]), x.T @ y)
    xv, yv = table("val")
    p = ((xv - mu) / sd) @ w
    c = [2 * np.cov(yv[:, k], p[:, k], bias=True)[0, 1] / (yv[:, k].var() + p[:, k].var()
                                                             + (yv[:, k].mean() - p[:, k].mean()) ** 2)
         for k in range(y.shape[1])]
    return float(np.mean(c))


def test_each_stream_carries_part_of_the_signal_and_fusion_more(va_cache):
    view = open_cache(va_cache)
    single = {m: _ridge_ccc(view, m) for m in "ivt"}
    fused = _ridge_ccc(view, "ivt")
    assert all(0.15 < c < 0.65 for c in single.values()), single
    assert fused > max(single.values()) + 0.15, (fused, single)


def test_shuffled_labels_are_the_only_difference(tmp_path):
    plain = open_cache(write_feature_cache(tmp_path / "a", videos=8, frames=200, seed=1))
    shuffled = open_cache(write_feature_cache(tmp_path / "b", videos=8, frames=200, seed=1, shuffle_train_labels=True))
    np.testing.assert_array_equal(plain.image, shuffled.image)
    np.testing.assert_array_equal(plain.video[16], shuffled.video[16])
    train = np.zeros(len(plain.targets), bool)
    for v in np.flatnonzero(plain.videos.split == "train"):
        lo = plain.videos.frame_offset[v]
        train[lo : lo + plain.videos.n_frames[v]] = True
    np.testing.assert_array_equal(plain.targets[~train], shuffled.targets[~train])
    assert not np.array_equal(plain.targets[train], shuffled.targets[train])
    np.testing.assert_array_equal(np.sort(plain.targets[train], axis=0), np.sort(shuffled.targets[train], axis=0))
    assert _ridge_ccc(shuffled, "ivt") < 0.15


def test_violence_labels_both_classes(tmp_path):
    view = open_cache(write_feature_cache(tmp_path / "v", task="violence", videos=8, frames=300, seed=0))
    y = view.targets[view.target_mask[:, 0], 0]
    assert set(np.unique(y)) == {0.0, 1.0}
    assert 0.1 < y.mean() < 0.5  # violent frames are the minority


def test_dims_plan_seed_and_bad_arguments(tmp_path):
    a = write_feature_cache(tmp_path / "a", videos=4, frames=150, seed=5, dims=16,
                            plan=SamplingPlan(video_frames=(8, 16)))
    b = write_feature_cache(tmp_path / "b", videos=4, frames=150, seed=5, dims={"image": 8, "video": 12})
    va, vb = open_cache(a), open_cache(b)
    assert va.spec.dims == {"video": 16, "image": 16, "text": 16} and sorted(va.video) == [8, 16]
    assert vb.spec.dims == {"image": 8, "video": 12} and vb.text is None
    # same seed, same videos and targets, whatever the dims and clip lengths
    np.testing.assert_array_equal(va.targets, open_cache(write_feature_cache(tmp_path / "c", videos=4, frames=150, seed=5,
                                                                              dims=16)).targets)
    with pytest.raises(CacheError, match="already exists"):
        write_feature_cache(a)
    with pytest.raises(CacheError, match="unknown task"):
        write_feature_cache(tmp_path / "d", task="emotion")
    with pytest.raises(CacheError, match="unknown modalities"):
        write_feature_cache(tmp_path / "e", dims={"audio": 8})


def test_audio_carries_its_own_share_and_shuffled_audio_none(tmp_path):
    plain = open_cache(write_feature_cache(tmp_path / "p", videos=20, frames=400, seed=3))
    sound = open_cache(write_feature_cache(tmp_path / "a", videos=20, frames=400, seed=3, audio=True))
    shuffled = open_cache(write_feature_cache(tmp_path / "s", videos=20, frames=400, seed=3, audio=True,
                                              shuffle_audio=True))
    assert sound.spec.dims == {"video": 48, "image": 48, "text": 32, "audio": 32}
    assert plain.audio is None and "audio" not in plain.spec.dims
    silent = [v for v in range(20) if v % 5 == 4]
    for v in range(20):
        assert sound.audio_mask[sound.image_index[sound.windows_of([v])]].any() == (v not in silent)
    # the control differs from the cache in the audio rows only
    np.testing.assert_array_equal(sound.image, shuffled.image)
    np.testing.assert_array_equal(sound.targets, shuffled.targets)
    assert not np.array_equal(sound.audio, shuffled.audio)
    alone, fused, without = _ridge_ccc(sound, "a"), _ridge_ccc(sound, "ivta"), _ridge_ccc(sound, "ivt")
    assert alone > 0.2 and fused > without + 0.1, (alone, fused, without)
    assert _ridge_ccc(shuffled, "a") < 0.1


def test_cli_dims_and_sampling_options(tmp_path):
    from typer.testing import CliRunner

    from fgvu.cli import app
    from fgvu.synth.features import parse_dims

    assert parse_dims("768") == 768 and parse_dims("video=768, image=512") == {"video": 768, "image": 512}
    with pytest.raises(CacheError, match="--dims 'wide'"):
        parse_dims("wide")
    out = CliRunner().invoke(app, ["synth", "features", str(tmp_path / "c"), "--videos", "3", "--frames", "150",
                                   "--dims", "video=24,image=12", "--video-frames", "8,16", "--caption-every", "8"])
    assert out.exit_code == 0, out.output
    view = open_cache(tmp_path / "c")
    assert view.spec.dims == {"video": 24, "image": 12} and view.text is None
    assert view.video[8].shape[1:] == (8, 24) and view.image.shape[1] == 12
    assert view.spec.sampling == SamplingPlan(caption_every=8, video_frames=(8, 16))
