"""Audio through the extraction pipeline: rows on the image grid, aligned with the image steps, each
second encoded once, videos without sound kept and masked, and audio added to an existing cache."""

from __future__ import annotations

import numpy as np
import pytest

from fakes import FakeAudio, Sound, fake_encoders, write_affwild2
from fgvu.cache import open_cache
from fgvu.cache.verify import verify_cache
from fgvu.extract.audio_source import RATE
from fgvu.extract.config import ExtractConfig
from fgvu.extract.pipeline import run_extract

FPS = 25  # fakes.write_video's rate
VIDEOS = {"loud": 190, "late": 140, "mute": 120, "pair": 100}
SOUNDS = {"loud": Sound(), "late": Sound(start=0.6), "pair": Sound(layout="mono")}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_affwild2(tmp_path_factory.mktemp("audio") / "data", VIDEOS, left_right=("pair",), audio=SOUNDS)


def _cfg(root, out, **kw) -> ExtractConfig:
    return ExtractConfig(dataset="aff-wild2", root=str(root), out=str(out), progress=False, **kw)


def _time_of(features: np.ndarray) -> np.ndarray:
    """The time FakeAudio's RMS says (the test tone's amplitude is 0.02 + 0.02 t)."""
    return (features[..., 0].astype(np.float64) * np.sqrt(2) - 0.02) / 0.02


def test_audio_steps_cover_the_image_steps_of_their_window(root, tmp_path):
    audio = FakeAudio()
    summary = run_extract(_cfg(root, tmp_path / "c", stride=8), encoders=fake_encoders(audio=audio))
    assert summary.succeeded == 5 and summary.failed == 0  # the video without sound is kept
    assert summary.audio.tracks == 4 and summary.audio.with_sound == 3
    assert dict(summary.audio.issues) == {"no audio stream": 1, "starts after the video": 1}
    assert any(line.startswith("audio: 3 of 4 soundtracks with sound") for line in summary.lines())
    view = open_cache(tmp_path / "c")
    assert view.spec.dims["audio"] == 4 and view.spec.encoders["audio"]["name"] == "fake-audio"
    assert view.audio.shape == (len(view.image), 4) and view.audio_mask.shape == (len(view.image),)
    assert verify_cache(tmp_path / "c") == []
    for v, name in enumerate(view.videos.name):
        windows = view.windows_of([v])
        rows = view.image_index[windows]  # [W, 16]: image step k and audio step k share the row
        frame = view.image_frame[rows]
        n = view.videos.n_frames[v]
        middle = (frame + np.minimum(4, n - frame) / 2) / FPS  # the middle of image step k, in seconds
        valid = view.audio_mask[rows]
        if name == "mute":
            assert not valid.any() and not view.audio[rows].any()
            continue
        if name == "late":  # the first 0.6 s have no sound: masked; the rest still on time
            assert not valid[middle < 0.55].any() and valid[middle > 0.7].all()
        else:
            assert valid.all(), name
        assert np.abs(_time_of(view.audio[rows][valid]) - middle[valid]).max() <= 320 / RATE, name


def test_each_second_is_encoded_once_however_many_windows_overlap_it(root, tmp_path):
    fed, windows = {}, {}
    for stride in (8, 64):
        audio = FakeAudio()
        summary = run_extract(_cfg(root, tmp_path / f"s{stride}", stride=stride),
                              encoders=fake_encoders(audio=audio))
        fed[stride] = summary.counts.audio_samples
        assert sum(b * length for b, length in audio.calls) == fed[stride]
        assert summary.counts.audio_calls == len(audio.calls)
        windows[stride] = summary.windows
    seconds = sum(n / FPS for name, n in VIDEOS.items() if name in SOUNDS)  # tracks with sound
    assert windows[8] >= 4 * windows[64]
    assert fed[8] == fed[64]  # far more windows at stride 8, the same audio encoded
    assert RATE * seconds <= fed[8] <= RATE * seconds * 1.6  # plus the chunks' context, nothing more


def test_audio_encoder_none_and_a_set_without_audio(root, tmp_path, monkeypatch):
    from fgvu.extract import pipeline

    built = []
    monkeypatch.setattr("fgvu.extract.encoders.registry.build_audio_encoder",
                        lambda name, **kw: built.append(name) or FakeAudio())
    for name in ("build_video_encoder", "build_image_text_encoder"):
        monkeypatch.setattr(f"fgvu.extract.encoders.registry.{name}", lambda *a, **k: None)
    monkeypatch.setattr("fgvu.extract.encoders.registry.build_captioner", lambda *a, **k: None)
    assert pipeline.build_encoders(_cfg(root, tmp_path, encoders="tiny", audio_encoder="none")).audio is None
    assert pipeline.build_encoders(_cfg(root, tmp_path, encoders="paper")).audio is None
    assert pipeline.build_encoders(_cfg(root, tmp_path, encoders="paper+audio")).audio is not None
    assert pipeline.build_encoders(_cfg(root, tmp_path, encoders="tiny")).audio is not None
    assert built == ["audio:wavlm-base-plus", "audio-tiny"]
    view_cache = tmp_path / "plain"
    run_extract(_cfg(root, view_cache), encoders=fake_encoders())
    view = open_cache(view_cache)
    assert "audio" not in view.spec.dims and view.audio is None and view.audio_mask is None
