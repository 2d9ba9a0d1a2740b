"""Synthetic video datasets: the real adapters read them, and their labels are visible in the pixels."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest

from fgvu.extract.datasets import build_adapter
from fgvu.extract.video_source import open_video
from fgvu.synth.videos import SynthError, numbered_frame, read_frame_number, write_video_dataset


@pytest.fixture(scope="module")
def affwild2(tmp_path_factory):
    return write_video_dataset(tmp_path_factory.mktemp("s") / "aw", "aff-wild2", videos=5, frames=120, seed=1)


@pytest.fixture(scope="module")
def dvd(tmp_path_factory):
    return write_video_dataset(tmp_path_factory.mktemp("s") / "dvd", "dvd", videos=5, frames=150, seed=2)


def decode_all(path):
    source = open_video(path)
    return np.stack([f for _, f in source.frames(np.arange(source.info.n_frames))])


def test_affwild2_layout_is_read_by_the_adapter(affwild2):
    assert (affwild2 / "batch1/synth-000.mp4").is_file()
    adapter = build_adapter("aff-wild2", affwild2)
    items = adapter.items()
    assert [it.name for it in items] == ["synth-000", "synth-001_left", "synth-001_right", "synth-002",
                                         "synth-003", "synth-004"]
    named = {it.name: it for it in items}
    assert named["synth-001_left"].source == named["synth-001_right"].source == affwild2 / "batch1/synth-001.mp4"
    assert {it.split for it in items} == {"train", "val"} and named["synth-003"].split == "val"
    lengths = {}
    for it in items:
        n = open_video(it.source).info.n_frames
        targets = adapter.load_targets(it, n)
        assert targets.warnings == [] and targets.values.shape == (n, 2)
        lengths[it.name] = n
        if it.name != "synth-000":
            assert targets.mask.all()
    assert lengths["synth-002"] < 64 <= min(v for k, v in lengths.items() if k != "synth-002")
    hidden = ~adapter.load_targets(named["synth-000"], lengths["synth-000"]).mask[:, 0]
    assert hidden.sum() == 20  # a stretch without anyone visible, annotated -5
    empty_frames = decode_all(named["synth-000"].source)[hidden]
    assert (empty_frames.max(axis=3) - empty_frames.min(axis=3)).max() < 60  # only the grey background


def test_affwild2_colour_is_valence_and_speed_is_arousal(affwild2):
    adapter = build_adapter("aff-wild2", affwild2)
    item = next(it for it in adapter.items() if it.name == "synth-004")
    frames = decode_all(item.source).astype(np.float32)
    targets = adapter.load_targets(item, len(frames)).values
    saturation = frames.max(axis=3) - frames.min(axis=3)
    valence_seen, centres = [], []
    for frame, sat in zip(frames, saturation):
        disc = sat > 150
        r, g, b = frame[disc].mean(0) / 255
        hue = colorsys.rgb_to_hsv(r, g, b)[0]
        valence_seen.append(1 - 2 * hue / (2 / 3))
        ys, xs = np.nonzero(disc)
        centres.append((xs.mean(), ys.mean()))
    assert np.abs(np.array(valence_seen) - targets[:, 0]).mean() < 0.1
    speed = np.linalg.norm(np.diff(np.array(centres), axis=0), axis=1)
    assert np.corrcoef(speed, targets[:-1, 1])[0, 1] > 0.8


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
