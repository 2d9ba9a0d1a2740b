"""Captioner through transformers Auto classes: captioner-tiny runs the real preprocess/generate/decode path."""

from __future__ import annotations

import numpy as np
import pytest

from fgvu.extract.encoders import build_captioner
from fgvu.extract.encoders.base import EncoderError
from fgvu.extract.encoders.hf_captioner import TransformersCaptioner, tiny_captioner_dir

PROMPT = "What is happening?"


@pytest.fixture(scope="module", autouse=True)
def _private_cache_one_thread(tmp_path_factory):
    """A private asset cache; one torch thread (a 32-wide model only loses to thread hand-offs)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FGVU_CACHE_DIR", str(tmp_path_factory.mktemp("fgvu-cache")))
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny() -> TransformersCaptioner:
    return build_captioner("captioner-tiny", device="cpu", max_new_tokens=12, batch_size=4)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (6, 48, 40, 3), dtype=np.uint8)


def test_returns_one_string_per_image(tiny, images):
    captions = tiny.caption(images, PROMPT)
    assert isinstance(captions, list) and len(captions) == 6
    assert all(isinstance(c, str) for c in captions)
    assert any(captions)  # something was generated and decoded
    assert tiny.caption(images[:0], PROMPT) == []
    fp = tiny.fingerprint
    assert fp["variant"] == "captioner-tiny" and fp["checkpoint"] == "random-init:0"
    assert fp["preprocessing"]["generation"]["max_new_tokens"] == 12


def test_images_reach_the_language_model(tiny, images):
    # A random 32-wide model may greedily decode the same tokens for every image, so compare
    # the next-token logits instead: they must depend on the pixels.
    import torch

    inputs = tiny.processor(images=list(torch.from_numpy(images[:2]).permute(0, 3, 1, 2)),
                            text=[PROMPT] * 2, return_tensors="pt", padding=True)
    with torch.inference_mode():
        logits = tiny.model(**inputs).logits[:, -1]
    assert not torch.allclose(logits[0], logits[1], atol=1e-4)


def test_deterministic_batched_and_same_as_local_dir(tiny, images):
    first = tiny.caption(images, PROMPT)  # batches of 4 and 2
    assert tiny.caption(images, PROMPT) == first
    one_batch = build_captioner("captioner-tiny", device="cpu", max_new_tokens=12, batch_size=16)
    assert one_batch.caption(images, PROMPT) == first
    assert tiny.caption(images.astype(np.float32) / 255.0, PROMPT) == first
    # The tiny model is an ordinary directory: the generic `captioner:<dir>` path gives the same captions.
    generic = build_captioner(f"captioner:{tiny_captioner_dir()}", device="cpu", max_new_tokens=12)
    assert generic.caption(images, PROMPT) == first
    assert len(generic.fingerprint["checkpoint"]) == 64  # sha256 over the directory's files


def test_beam_search_and_sampling(images):
    beams = build_captioner("captioner-tiny", device="cpu", max_new_tokens=6, num_beams=3)
    assert len(beams.caption(images[:2], PROMPT)) == 2
    sampled = build_captioner("captioner-tiny", device="cpu", max_new_tokens=6, temperature=1.0)
    assert sampled.caption(images[:3], PROMPT) == sampled.caption(images[:3], PROMPT)  # fixed seed


def test_bad_input(tiny, tmp_path):
    with pytest.raises(EncoderError, match="shaped"):
        tiny.caption(np.zeros((2, 32, 32), np.uint8), PROMPT)
    with pytest.raises(EncoderError, match=r"\[0, 1\]"):
        tiny.caption(np.full((1, 32, 32, 3), 3.0, np.float32), PROMPT)
    with pytest.raises(EncoderError, match="no config.json"):
        build_captioner(f"captioner:{tmp_path}", device="cpu")
