"""A run's encoders from its cache's fingerprints (fgvu.inference.encoders): the mapping, overrides, checks."""

import pytest

from fgvu.cache import CacheSpec
from fgvu.extract.encoders.base import EncoderError
from fgvu.inference.encoders import (
    EncoderOverrides, UnusedCaptioner, build_run_encoders, check_fingerprints, encoder_name, encoder_names, roles_read,
)
from fgvu.sampling import SamplingPlan


def fp(name, variant, checkpoint="random-init:0", **extra):
    return {"name": name, "variant": variant, "dim": 8, "preprocessing": {}, "checkpoint": checkpoint, **extra}


@pytest.mark.parametrize("role, fingerprint, name", [
    ("video", fp("videoprism", "videoprism-tiny"), "videoprism-tiny"),
    ("video", fp("videoprism", "videoprism-base", "ab" * 32), "videoprism-base"),
    ("video", fp("videoprism", "videoprism-large", "cd" * 32), "videoprism-large"),
    ("image", fp("clip", "clip-tiny"), "clip-tiny"),
    ("image", fp("clip", "ViT-L-14:openai", "ef" * 32), "clip:ViT-L-14:openai"),
    ("image", fp("clip", "ViT-B-16:laion2b_s34b_b88k", "01" * 32), "clip:ViT-B-16:laion2b_s34b_b88k"),
    ("captioner", fp("captioner", "captioner-tiny"), "captioner-tiny"),
    ("captioner", fp("captioner:minigpt4", "vicuna7b", "23" * 32), "captioner:minigpt4:models/minigpt4"),
])
def test_every_registry_fingerprint_maps_back_to_a_buildable_name(role, fingerprint, name):
    assert encoder_name(role, fingerprint) == name


@pytest.mark.parametrize("role, fingerprint, option", [
    ("image", fp("clip", "ViT-B-16:file", "45" * 32), "--image-encoder clip:ViT-B-16:/path"),
    ("image", fp("clip", "ViT-B-16:random", "random-init:0"), "--image-encoder clip:ViT-B-16:/path"),
    ("captioner", fp("captioner", "blip-2:my-blip", "67" * 32), "--captioner captioner:/path"),
])
def test_local_weights_are_not_recorded_so_the_error_asks_for_them(role, fingerprint, option):
    with pytest.raises(EncoderError, match="local path, which the cache does not record") as e:
        encoder_name(role, fingerprint)
    assert option in str(e.value)


def test_unknown_fingerprints_and_missing_roles_are_errors():
    with pytest.raises(EncoderError, match="names no encoder this fgvu can build; name one with --video-encoder"):
        encoder_name("video", fp("i3d", "r50"))
    with pytest.raises(EncoderError, match="records no captioner encoder"):
        encoder_names({"video": fp("videoprism", "videoprism-tiny"), "image": fp("clip", "clip-tiny")})


def test_overrides_win_and_only_the_roles_asked_for_are_resolved():
    encoders = {"video": fp("videoprism", "videoprism-tiny"), "image": fp("clip", "ViT-B-16:file"),
                "captioner": fp("captioner", "captioner-tiny")}
    names = encoder_names(encoders, EncoderOverrides(image_encoder="clip:ViT-B-16:/w.bin"))
    assert names == {"video": "videoprism-tiny", "image": "clip:ViT-B-16:/w.bin", "captioner": "captioner-tiny"}
    assert encoder_names(encoders, roles=("video",)) == {"video": "videoprism-tiny"}


def test_roles_read_follow_the_modalities():
    assert roles_read(("v",)) == {"video"}
    assert roles_read(("v", "i")) == {"video", "image"}
    assert roles_read(("i", "t")) == {"image", "captioner", "text"}


def test_fingerprint_mismatch_in_a_read_role_is_refused_and_others_are_ignored():
    recorded = {"video": fp("videoprism", "videoprism-tiny"), "image": fp("clip", "clip-tiny", "aa")}
    built = {"video": fp("videoprism", "videoprism-tiny"), "image": fp("clip", "clip-tiny", "bb")}
    check_fingerprints(recorded, built, {"video"})
    with pytest.raises(EncoderError, match=r"image \(checkpoint: run 'aa', now 'bb'\)"):
        check_fingerprints(recorded, built, {"video", "image"})


def test_unused_captioner_keeps_input_side_and_says_it_skipped():
    class Real:
        input_size = 384
        fingerprint = fp("captioner", "captioner-tiny")

        def caption(self, images, prompt):
            raise AssertionError("never run")

    unused = UnusedCaptioner(Real())
    assert unused.input_size == 384 and unused.fingerprint["variant"] == "captioner-tiny"
    assert "not computed" in unused.fingerprint["captions"]
    assert unused.caption([1, 2, 3], "q") == ["", "", ""]


def test_missing_weights_give_extracts_own_offline_error(monkeypatch):
    """videoprism-base with no weights and HF_HUB_OFFLINE: the very message `fgvu extract` gives."""
    from fgvu.extract.config import ExtractConfig
    from fgvu.extract.pipeline import build_encoders

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")
    spec = CacheSpec(dataset="folder", task="va", sampling=SamplingPlan(), dims={"video": 768, "image": 64, "text": 64},
                     encoders={"video": fp("videoprism", "videoprism-base", "ab" * 32),
                               "image": fp("clip", "clip-tiny"), "text": {**fp("clip", "clip-tiny"), "role": "text"},
                               "captioner": fp("captioner", "captioner-tiny")})
    with pytest.raises(EncoderError) as extract_error:
        build_encoders(ExtractConfig(dataset="folder", encoders="tiny", video_encoder="videoprism-base",
                                     device="cpu"), with_captioner=False)
    with pytest.raises(EncoderError) as predict_error:
        build_run_encoders(spec, ("v", "i"), device="cpu")
    assert str(predict_error.value) == str(extract_error.value)
    assert "HF_HUB_OFFLINE" in str(predict_error.value)


@pytest.mark.parametrize("fingerprint, name", [
    (fp("audio", "audio-tiny"), "audio-tiny"),
    (fp("audio", "wavlm-base-plus", "ab" * 32), "audio:wavlm-base-plus"),
    (fp("audio", "wav2vec2-base", "cd" * 32), "audio:wav2vec2-base"),
    (fp("audio", "hubert-base", "ef" * 32), "audio:hubert-base"),
])
def test_audio_fingerprints_map_back_to_the_audio_registry(fingerprint, name):
    from fgvu.extract.encoders.registry import build_audio_encoder

    assert encoder_name("audio", fingerprint) == name
    if name == "audio-tiny":  # the name rebuilds the very encoder the fingerprint describes
        assert build_audio_encoder(name, device="cpu").fingerprint["variant"] == "audio-tiny"


def test_audio_from_a_local_directory_must_be_named_and_is_only_resolved_when_recorded():
    with pytest.raises(EncoderError, match="--audio-encoder audio:/path"):
        encoder_name("audio", fp("audio", "wavlm:my-wavlm", "12" * 32))
    encoders = {"video": fp("videoprism", "videoprism-tiny"), "image": fp("clip", "clip-tiny"),
                "captioner": fp("captioner", "captioner-tiny")}
    assert "audio" not in encoder_names(encoders)  # a cache without audio: no audio encoder
    with_audio = {**encoders, "audio": fp("audio", "audio-tiny")}
    assert encoder_names(with_audio)["audio"] == "audio-tiny"
    assert encoder_names(with_audio, EncoderOverrides(audio_encoder="audio:/w"))["audio"] == "audio:/w"
    assert roles_read(("i", "a")) == {"image", "audio"}
