"""Encoder registry: names, encoder sets, offline failures, dispatch to MiniGPT-4."""

from __future__ import annotations

import inspect
import sys
import time
import types

import numpy as np
import pytest

from fgvu.extract.encoders import (
    CAPTION_BATCH,
    ENCODER_SETS,
    EncoderError,
    build_captioner,
    build_image_text_encoder,
    build_video_encoder,
)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FGVU_CACHE_DIR", str(tmp_path / "fgvu-cache"))


def test_unknown_names_list_the_known_ones():
    with pytest.raises(EncoderError) as info:
        build_video_encoder("videoprism-huge")
    assert all(n in str(info.value) for n in ("videoprism-base", "videoprism-large", "videoprism-tiny"))
    with pytest.raises(EncoderError) as info:
        build_image_text_encoder("siglip")
    assert "clip:<open_clip model>" in str(info.value) and "clip-tiny" in str(info.value)
    with pytest.raises(EncoderError) as info:
        build_captioner("blip")
    assert all(n in str(info.value) for n in ("captioner:<local", "captioner:minigpt4:", "captioner-tiny"))
    with pytest.raises(EncoderError, match="takes no checkpoint"):
        build_video_encoder("videoprism-tiny:/some/file.npz")


def test_encoder_sets():
    # issue 11: the tiny set gained audio-tiny; paper stays the paper's three, paper+audio adds WavLM-base+
    assert ENCODER_SETS["tiny"] == {"video": "videoprism-tiny", "image": "clip-tiny", "captioner": "captioner-tiny",
                                    "audio": "audio-tiny"}
    assert set(ENCODER_SETS["paper"]) == {"video", "image", "captioner"}
    assert ENCODER_SETS["paper+audio"] == {**ENCODER_SETS["paper"], "audio": "audio:wavlm-base-plus"}
    assert ENCODER_SETS["paper"]["video"] == "videoprism-base"
    assert ENCODER_SETS["paper"]["image"] == "clip:ViT-L-14:openai"
    assert ENCODER_SETS["paper"]["captioner"].startswith("captioner:minigpt4:")


def test_one_captioner_batch_default():
    """The extraction batches, the registry and both captioners default to the same captioner batch."""
    from fgvu.extract.config import ExtractConfig
    from fgvu.extract.encoders.hf_captioner import TransformersCaptioner
    from fgvu.extract.encoders.minigpt4 import MiniGPT4Captioner
    from fgvu.extract.encoding import BatchSizes

    def default(function) -> int:
        return inspect.signature(function).parameters["batch_size"].default

    assert CAPTION_BATCH == 64
    assert BatchSizes().caption == default(build_captioner) == CAPTION_BATCH
    assert default(TransformersCaptioner) == default(MiniGPT4Captioner) == CAPTION_BATCH
    assert ExtractConfig(dataset="dvd").caption_batch == CAPTION_BATCH


@pytest.fixture
def offline_empty_hub(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))


@pytest.mark.parametrize("name", ["videoprism-base", "videoprism-large"])
def test_offline_real_videoprism_fails_at_once_with_instructions(offline_empty_hub, name):
    start = time.monotonic()
    with pytest.raises(EncoderError) as info:
        build_video_encoder(name, device="cpu")
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert f"{name}:/path/to/" in message and "huggingface-cli download google/" in message


def test_offline_clip_tag_fails_at_once(offline_empty_hub):
    start = time.monotonic()
    with pytest.raises(EncoderError, match="local file"):
        build_image_text_encoder("clip:ViT-L-14:openai", device="cpu")
    assert time.monotonic() - start < 15  # mostly the open_clip import


@pytest.mark.parametrize("separator", [":", "="])
def test_real_variant_reads_the_given_file(tmp_path, separator):
    """A local file goes straight to the loader, which checks it against the official base config."""
    from fgvu.extract.encoders.videoprism_checkpoint import init_videoprism_params, save_videoprism_npz
    from fgvu.extract.encoders.videoprism_model import VIDEOPRISM_CONFIGS

    path = tmp_path / "tiny.npz"
    save_videoprism_npz(init_videoprism_params(VIDEOPRISM_CONFIGS["videoprism-tiny"]), path)
    with pytest.raises(EncoderError) as info:
        build_video_encoder(f"videoprism-base{separator}{path}", device="cpu")
    assert str(path) in str(info.value) and "shape mismatches" in str(info.value)


def test_tiny_set_builds_and_agrees_on_dims():
    video = build_video_encoder("videoprism-tiny", device="cpu")
    image = build_image_text_encoder("clip-tiny", device="cpu")
    clips = np.zeros((1, 16, 72, 72, 3), np.uint8)
    assert video.encode_clips(clips).shape == (1, 16, video.dim)
    assert image.encode_texts(["x"]).shape == (1, image.dim)
    assert video.fingerprint["checkpoint"] == image.fingerprint["checkpoint"] == "random-init:0"


def test_minigpt4_names_dispatch_to_its_module(monkeypatch):
    calls = []

    class FakeMiniGPT4Captioner:
        def __init__(self, directory, **kwargs):
            calls.append((directory, kwargs))

    fake = types.ModuleType("fgvu.extract.encoders.minigpt4")
    fake.MiniGPT4Captioner = FakeMiniGPT4Captioner
    monkeypatch.setitem(sys.modules, "fgvu.extract.encoders.minigpt4", fake)
    captioner = build_captioner(
        "captioner:minigpt4:models/minigpt4", device="cpu", max_new_tokens=7, num_beams=2, temperature=0.5, batch_size=3
    )
    assert isinstance(captioner, FakeMiniGPT4Captioner)
    assert calls == [
        ("models/minigpt4", dict(device="cpu", max_new_tokens=7, num_beams=2, temperature=0.5, batch_size=3))
    ]
