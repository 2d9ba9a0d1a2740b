"""Synthetic videos with sound: the soundtrack carries a share of the target the pictures do not, and
end to end (real files, the real audio-tiny encoder) a model that hears predicts it."""

from __future__ import annotations

import numpy as np
import pytest

from fgvu.extract.audio_source import RATE, read_audio
from fgvu.extract.datasets import build_adapter
from fgvu.extract.video_source import open_video
from fgvu.synth.soundtrack import has_track
from fgvu.synth.videos import FPS, write_video_dataset


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The same aff-wild2 dataset written with and without sound."""
    base = tmp_path_factory.mktemp("sound")
    kw = dict(videos=10, frames=200, seed=4)
    return (write_video_dataset(base / "quiet", "aff-wild2", **kw),
            write_video_dataset(base / "loud", "aff-wild2", audio=True, **kw))


def _targets(root):
    adapter = build_adapter("aff-wild2", root, frames="video")  # the files with the soundtracks
    out = {}
    for item in adapter.items():
        n = open_video(item.source).info.n_frames
        out[item.name] = (item, adapter.load_targets(item, n).values)
    return out


def _loudness_db(track, n_frames: int) -> np.ndarray:
    per = RATE // FPS
    x = track.samples[: n_frames * per].reshape(n_frames, per).astype(np.float64)
    return 10 * np.log10((x ** 2).mean(axis=1) * 2 + 1e-12)


def test_pictures_stay_the_same_and_the_sound_carries_its_share(pair):
    quiet, loud = _targets(pair[0]), _targets(pair[1])
    assert quiet.keys() == loud.keys()
    for name, (item, with_sound) in loud.items():
        index = int(name.split("-")[1][:3])
        without = quiet[name][1]
        ok = without[:, 0] > -5
        np.testing.assert_array_equal(with_sound[:, 0], without[:, 0])  # valence: the hue's alone
        n = len(with_sound)
        track = read_audio(item.source, n, FPS)
        if not has_track(index):
            assert not track.has_sound and [i.kind for i in track.issues] == ["no audio stream"]
            np.testing.assert_array_equal(with_sound, without)
            continue
        assert track.valid.mean() > 0.97 and track.issues == []
        # arousal = mean of the pictures' share and the sound's cue, which sets the loudness (-30..-6 dBFS)
        cue = 2 * with_sound[:, 1] - without[:, 1]
        assert np.abs(cue[ok]).max() <= 1.0 + 1e-3 and cue[ok].std() > 0.2
        db = _loudness_db(track, n)
        inner = ok & (np.arange(n) > 2) & (np.arange(n) < n - 2)
        assert np.corrcoef(db[inner], cue[inner])[0, 1] > 0.98
    first = open_video(pair[0] / "batch1" / "synth-000.mp4")
    again = open_video(pair[1] / "batch1" / "synth-000.mp4")
    a = np.stack([f for _, f in first.frames(np.arange(20))])
    b = np.stack([f for _, f in again.frames(np.arange(20))])
    np.testing.assert_array_equal(a, b)


def test_dvd_fights_are_also_heard_off_screen(tmp_path):
    kw = dict(videos=5, frames=240, seed=2)
    quiet, loud = write_video_dataset(tmp_path / "q", "dvd", **kw), write_video_dataset(tmp_path / "l", "dvd",
                                                                                        audio=True, **kw)
    heard_only = 0
    for csv in sorted(loud.glob("*/annotations/*.csv")):
        seen = np.loadtxt(quiet / csv.relative_to(loud), delimiter=",", skiprows=1)[:, 1]
        label = np.loadtxt(csv, delimiter=",", skiprows=1)[:, 1]
        assert (label >= seen).all()  # every fight seen is still violent ...
        index = int(csv.stem.split("-")[1])
        if not has_track(index):
            np.testing.assert_array_equal(label, seen)
            continue
        heard_only += int(((label == 1) & (seen == 0)).sum())  # ... and some are only heard
        track = read_audio(csv.parent.parent / "videos" / f"{csv.stem}.mp4", len(label), FPS)
        db = _loudness_db(track, len(label))
        assert db[label == 1].mean() > db[label == 0].mean() + 15
    assert heard_only > 20


def _ridge_ccc(x_train, y_train, x_test, y_test, alpha: float = 10.0) -> float:
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
    a, b = (x_train - mu) / sd, (x_test - mu) / sd
    a, b = np.c_[a, np.ones(len(a))], np.c_[b, np.ones(len(b))]
    w = np.linalg.solve(a.T @ a + alpha * np.eye(a.shape[1]), a.T @ y_train)
    p = b @ w
    return float(2 * np.cov(p, y_test, bias=True)[0, 1] / (p.var() + y_test.var() + (p.mean() - y_test.mean()) ** 2))


def test_end_to_end_the_real_audio_path_carries_the_sound_share(pair, tmp_path):
    """Real files through extraction with the real audio-tiny encoder: a ridge model on the cached audio
    rows predicts the sound's share of arousal on held-out videos; on the image rows (which see the disc,
    not the sound), or on audio rows shuffled across videos, it cannot."""
    from fakes import FakeCaptioner, FakeVideo
    from fgvu.cache import open_cache
    from fgvu.extract.config import ExtractConfig
    from fgvu.extract.encoders import build_audio_encoder, build_image_text_encoder
    from fgvu.extract.encoding import EncoderSet
    from fgvu.extract.pipeline import run_extract

    encoders = EncoderSet(video=FakeVideo(), image_text=build_image_text_encoder("clip-tiny", device="cpu"),
                          captioner=FakeCaptioner(), audio=build_audio_encoder("audio-tiny", device="cpu"))
    cache = tmp_path / "cache"
    summary = run_extract(ExtractConfig(dataset="aff-wild2", root=str(pair[1]), out=str(cache), progress=False),
                          encoders=encoders)
    # 8 videos with sound; the two-person video read from crops hears its soundtrack once per track
    assert summary.failed == 0 and summary.audio.with_sound == 9 and summary.audio.issues == {"no audio stream": 2}
    quiet, loud = _targets(pair[0]), _targets(pair[1])
    view = open_cache(cache)
    rows = {"audio": [], "image": [], "cue": [], "video": []}
    for v, name in enumerate(view.videos.name):
        lo, hi = view.videos.image_offset[v], (view.videos.image_offset[v + 1] if v + 1 < len(view.videos)
                                                else len(view.image))
        keep = view.audio_mask[lo:hi]
        if not keep.any():
            continue
        cue = 2 * loud[name][1][:, 1] - quiet[name][1][:, 1]
        frames = np.minimum(view.image_frame[lo:hi] + 2, len(cue) - 1)
        keep &= quiet[name][1][frames, 1] > -5
        rows["audio"].append(view.audio[lo:hi][keep].astype(np.float64))
        rows["image"].append(view.image[lo:hi][keep].astype(np.float64))
        rows["cue"].append(cue[frames][keep])
        rows["video"].append(np.full(int(keep.sum()), v))
    data = {k: np.concatenate(x) for k, x in rows.items()}
    videos = np.unique(data["video"])
    test = np.isin(data["video"], videos[::3])  # a third of the videos held out
    rng = np.random.default_rng(0)

    def score(x):
        return _ridge_ccc(x[~test], data["cue"][~test], x[test], data["cue"][test])

    heard, seen = score(data["audio"]), score(data["image"])
    shuffled = score(data["audio"][rng.permutation(len(data["audio"]))])
    assert heard > 0.5 and heard > seen + 0.3 and shuffled < 0.2, (heard, seen, shuffled)
