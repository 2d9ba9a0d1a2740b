"""Synthetic video datasets: the real adapters read them, and their labels are visible in the pixels."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest

from fgvu.extract.datasets import build_adapter
from fgvu.extract.video_source import open_video
from fgvu.synth.alignment import shifted_scores
from fgvu.synth.videos import SynthError, numbered_frame, read_frame_number, write_video_dataset


@pytest.fixture(scope="module")
def affwild2(tmp_path_factory):
    return write_video_dataset(tmp_path_factory.mktemp("s") / "aw", "aff-wild2", videos=5, frames=120, seed=1)


@pytest.fixture(scope="module")
def dvd(tmp_path_factory):
    return write_video_dataset(tmp_path_factory.mktemp("s") / "dvd", "dvd", videos=5, frames=150, seed=2)


def decode_all(path, n_frames=None):
    source = open_video(path, **({} if n_frames is None else {"n_frames": n_frames}))
    return np.stack([f for _, f in source.frames(np.arange(source.info.n_frames))])


def frame_count(adapter, item) -> int:
    """The frames extraction gives the item: the annotation's for a crop folder, else the video's."""
    return adapter.frame_count(item) or open_video(item.source).info.n_frames


def read_text(path):
    return path.read_text().splitlines()


def test_affwild2_layout_is_read_by_the_adapter(affwild2):
    assert (affwild2 / "batch1/synth-000.mp4").is_file()
    adapter = build_adapter("aff-wild2", affwild2)
    items = adapter.items()
    assert [it.name for it in items] == ["synth-000", "synth-001_left", "synth-001_right", "synth-002",
                                         "synth-003", "synth-004"]
    named = {it.name: it for it in items}
    assert named["synth-001_left"].source == named["synth-001_right"].source == affwild2 / "batch1/synth-001.mp4"
    assert (named["synth-001_left"].half, named["synth-001_right"].half) == ("left", "right")
    assert {it.name: it.input_kind for it in items} == {
        "synth-000": "frame folder", "synth-001_left": "half frame", "synth-001_right": "half frame",
        "synth-002": "whole frame", "synth-003": "frame folder", "synth-004": "frame folder"}
    assert {it.split for it in items} == {"train", "val"} and named["synth-003"].split == "val"
    lengths = {}
    for it in items:
        n = frame_count(adapter, it)
        targets = adapter.load_targets(it, n)
        assert targets.warnings == [] and targets.values.shape == (n, 2)
        lengths[it.name] = n
        if it.name != "synth-000":
            assert targets.mask.all()
    assert lengths["synth-002"] < 64 <= min(v for k, v in lengths.items() if k != "synth-002")
    hidden = ~adapter.load_targets(named["synth-000"], lengths["synth-000"]).mask[:, 0]
    assert hidden.sum() == 20  # a stretch without anyone visible, annotated -5
    empty_frames = decode_all(affwild2 / "batch1/synth-000.mp4")[hidden]
    assert (empty_frames.max(axis=3) - empty_frames.min(axis=3)).max() < 60  # only the grey background


def test_affwild2_face_crops_follow_their_track_with_some_missing(affwild2):
    """Each crop shows its track's disc; no crop where the disc is gone, some random misses, and none
    for synth-000's last 5 frames, so that its length must come from the annotation."""
    adapter = build_adapter("aff-wild2", affwild2)
    named = {it.name: it for it in adapter.items()}
    item = named["synth-000"]
    n = frame_count(adapter, item)
    numbers = sorted(int(p.stem) for p in item.source.glob("*.jpg"))
    assert n == len(read_text(item.annotation)) - 1 and max(numbers) < n - 4  # 1-based names, last 5 absent
    source = open_video(item.source, n_frames=n)
    targets = adapter.load_targets(item, n)
    hidden = np.flatnonzero(~targets.mask[:, 0])
    assert set(hidden) <= set(source.missing) and set(range(n - 5, n)) <= set(source.missing)
    random_misses = len(source.missing) - len(hidden) - 5
    assert 0 < random_misses < 0.15 * n
    crops = decode_all(item.source, n)
    assert crops.shape[1:] == (112, 112, 3)
    centre = crops[:, 40:72, 40:72].astype(np.float32).mean(axis=(1, 2)) / 255
    shown = [f for f in range(n) if f not in source.missing]
    hue = np.array([colorsys.rgb_to_hsv(*centre[f])[0] for f in shown])
    np.testing.assert_allclose(1 - 2 * hue / (2 / 3), targets.values[shown, 0], atol=0.12)


def test_affwild2_hue_is_valence_and_brightness_is_arousal(affwild2):
    frames = decode_all(affwild2 / "batch1/synth-004.mp4").astype(np.float32)
    adapter = build_adapter("aff-wild2", affwild2)
    item = next(it for it in adapter.items() if it.name == "synth-004")
    targets = adapter.load_targets(item, len(frames)).values
    saturation = frames.max(axis=3) - frames.min(axis=3)
    valence_seen, arousal_seen, centres = [], [], []
    for frame, sat in zip(frames, saturation):
        disc = sat > 0.8 * sat.max()  # the disc's core; the background is grey
        r, g, b = frame[disc].mean(0) / 255
        hue, _, brightness = colorsys.rgb_to_hsv(r, g, b)
        valence_seen.append(1 - 2 * hue / (2 / 3))
        arousal_seen.append((brightness - 0.4) / 0.3 - 1)
        ys, xs = np.nonzero(disc)
        centres.append((xs.mean(), ys.mean()))
    assert np.abs(np.array(valence_seen) - targets[:, 0]).mean() < 0.1
    assert np.abs(np.array(arousal_seen) - targets[:, 1]).mean() < 0.1
    speed = np.linalg.norm(np.diff(np.array(centres), axis=0), axis=1)
    assert np.corrcoef(speed, targets[:-1, 1])[0, 1] > 0.7  # it also moves faster when aroused


def test_one_frame_misalignment_of_the_labels_drops_ccc(affwild2):
    """The targets are sharp events: a perfect predictor of the aligned labels, scored against labels
    shifted by one frame, loses at least 0.05 CCC on valence and on arousal (pooled over all tracks)."""
    adapter = build_adapter("aff-wild2", affwild2)
    video, frame, values, mask = [], [], [], []
    for v, item in enumerate(adapter.items()):
        targets = adapter.load_targets(item, frame_count(adapter, item))
        video.append(np.full(len(targets.values), v))
        frame.append(np.arange(len(targets.values)))
        values.append(targets.values)
        mask.append(targets.mask)
    video, frame, values, mask = (np.concatenate(a) for a in (video, frame, values, mask))
    scores = shifted_scores(video, frame, values, values, mask, ("valence", "arousal"), shift=1)
    for name, s in scores.items():
        assert s["aligned"] == pytest.approx(1.0)
        assert s["aligned"] - s["shifted"] >= 0.05, (name, s)
    # an independent computation of the valence drop: consecutive frames of each video, both valid
    same_video = (video[1:] == video[:-1]) & mask[1:, 0] & mask[:-1, 0]
    a, b = values[:-1, 0][same_video].astype(np.float64), values[1:, 0][same_video].astype(np.float64)
    concordance = 2 * np.cov(a, b, bias=True)[0, 1] / (a.var() + b.var() + (a.mean() - b.mean()) ** 2)
    assert scores["valence"]["shifted"] == pytest.approx(concordance, abs=1e-9)


def test_dvd_layout_and_collisions_are_fast_motion(dvd):
    adapter = build_adapter("dvd", dvd)
    items = adapter.items()
    assert {it.split for it in items} == {"train", "val", "test"}
    assert all(it.annotation is not None and it.annotation.parent.name == "annotations" for it in items)
    motion, labels = [], []
    for it in items:
        frames = decode_all(it.source).astype(np.float32)
        targets = adapter.load_targets(it, len(frames))
        assert targets.warnings == [] and targets.mask.all()
        motion.append(np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3)))
        labels.append(targets.values[1:, 0])
    motion, labels = np.concatenate(motion), np.concatenate(labels)
    assert 0.1 < labels.mean() < 0.7
    assert motion[labels == 1].mean() > 4 * motion[labels == 0].mean()


def test_same_seed_same_labels_and_rewrite(tmp_path, affwild2):
    again = write_video_dataset(tmp_path / "aw", "aff-wild2", videos=5, frames=120, seed=1)
    ann = "VA_Estimation_Challenge/Train_Set/synth-004.txt"
    assert (again / ann).read_text() == (affwild2 / ann).read_text()
    write_video_dataset(again, "aff-wild2", videos=2, frames=30, seed=3)  # our own folder: replaced
    assert sorted(p.name for p in (again / "batch1").iterdir()) == ["synth-000.mp4", "synth-001.mp4"]


def test_refuses_foreign_folders_and_bad_arguments(tmp_path):
    (tmp_path / "mine.txt").write_text("precious")
    with pytest.raises(SynthError, match="not empty"):
        write_video_dataset(tmp_path, "dvd", videos=2, frames=30)
    with pytest.raises(SynthError, match="layout"):
        write_video_dataset(tmp_path / "x", "kinetics")
    with pytest.raises(SynthError, match="even"):
        write_video_dataset(tmp_path / "x", "dvd", size=(95, 128))


def test_numbered_frames_survive_resizing():
    frame = numbered_frame(201, (64, 96))
    assert read_frame_number(frame) == 201
    assert read_frame_number(frame[::2, ::3]) == 201


def test_mpeg4_fallback_keeps_frames_readable(tmp_path, monkeypatch):
    import fgvu.synth.videos as videos

    monkeypatch.setattr(videos, "video_codec", lambda: "mpeg4")
    path = tmp_path / "m.mp4"
    videos.write_video(path, np.stack([numbered_frame(k) for k in range(20)]))
    source = open_video(path)
    assert source.info.n_frames == 20
    assert [read_frame_number(f) for _, f in source.frames(np.arange(20))] == list(range(20))
