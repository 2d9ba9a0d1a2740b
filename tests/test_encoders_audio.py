"""Audio encoders: the transformers speech models by name, audio-tiny, offline errors, channel layouts."""

from __future__ import annotations

import numpy as np
import pytest

from fakes import Sound, write_video
from fgvu.extract.audio_features import StepSpans, audio_rows
from fgvu.extract.audio_source import RATE, read_audio
from fgvu.extract.encoders import EncoderError, build_audio_encoder
from fgvu.extract.encoders.audio import tiny_audio_dir
from fgvu.extract.encoders.registry import DEFAULT_AUDIO_ENCODER, audio_encoder_name


@pytest.fixture(scope="module")
def tiny():
    return build_audio_encoder("audio-tiny", device="cpu")


def test_tiny_is_a_small_wavlm_with_the_real_frame_grid(tiny):
    assert (tiny.hop, tiny.receptive_field, tiny.dim, tiny.normalize) == (320, 400, 32, True)
    fp = tiny.fingerprint
    assert fp["name"] == "audio" and fp["variant"] == "audio-tiny" and fp["checkpoint"] == "random-init:0"
    assert fp["preprocessing"]["rate"] == RATE and fp["preprocessing"]["chunk_seconds"] == 10.0
    waves = np.random.default_rng(0).normal(scale=0.1, size=(3, RATE)).astype(np.float32)
    out = tiny.encode_waves(waves)
    assert out.shape == (3, tiny.frames_for(RATE), 32) == (3, 49, 32) and np.isfinite(out).all()
    one_by_one = np.concatenate([tiny.encode_waves(w[None]) for w in waves])
    np.testing.assert_allclose(out, one_by_one, atol=1e-5)  # batching changes nothing
    assert not np.allclose(out[0], out[1])  # different sound, different features
    assert tiny.encode_waves(np.zeros((2, 399), np.float32)).shape == (2, 0, 32)
    with pytest.raises(EncoderError, match=r"\(B, L\)"):
        tiny.encode_waves(np.zeros(400, np.float32))


def test_names_local_directories_and_offline_errors(tiny, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = tiny_audio_dir()
    wave = np.random.default_rng(1).normal(scale=0.1, size=(1, 8000)).astype(np.float32)
    for name in (f"audio:{folder}", f"audio:wavlm-base-plus:{folder}"):
        local = build_audio_encoder(name, device="cpu")
        np.testing.assert_allclose(local.encode_waves(wave), tiny.encode_waves(wave), atol=1e-6)
    assert build_audio_encoder(f"audio:wavlm-base-plus:{folder}", device="cpu").fingerprint["variant"] == \
        "wavlm-base-plus"
    for name in ("audio:wavlm-base-plus", "audio:wav2vec2-base", "audio:hubert-base"):
        with pytest.raises(EncoderError, match="HF_HUB_OFFLINE is set; pass a local copy") as info:
            build_audio_encoder(name, device="cpu")
        assert f"{name}:/path/to/dir" in str(info.value)
    for bad in ("wavlm", "audio:", "audio:/no/such/dir"):
        with pytest.raises(EncoderError, match="audio"):
            build_audio_encoder(bad, device="cpu")


def test_which_audio_encoder_a_run_uses():
    assert audio_encoder_name("tiny", None) == "audio-tiny"
    assert audio_encoder_name("paper", None) is None  # the paper's set has no audio
    assert audio_encoder_name("paper", None, needed=True) == DEFAULT_AUDIO_ENCODER == "audio:wavlm-base-plus"
    assert audio_encoder_name("paper+audio", None) == "audio:wavlm-base-plus"
    assert audio_encoder_name("tiny", "none") is None and audio_encoder_name("paper", "audio-tiny") == "audio-tiny"


def test_mono_stereo_and_5_1_give_the_same_features(tiny, tmp_path):
    fps, n_frames = 25, 50
    frames = np.arange(0, n_frames, 4)
    features = {}
    for layout in ("mono", "stereo", "5.1"):
        path = write_video(tmp_path / f"{layout}.mkv", n_frames, fps=fps, container_format="matroska",
                           audio=Sound(layout=layout, codec="flac"))
        track = read_audio(path, n_frames, fps)
        features[layout] = audio_rows(tiny, track, StepSpans(frames, 4, n_frames, fps))
    rows, valid = features["mono"]
    assert valid.all() and rows.std(axis=0).min() > 0
    for layout in ("stereo", "5.1"):
        np.testing.assert_allclose(features[layout][0], rows, atol=1e-4)
        np.testing.assert_array_equal(features[layout][1], valid)
