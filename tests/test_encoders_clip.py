"""CLIP through open_clip: shapes, one embedding space, local-file round trip, preprocessing parity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fgvu.extract.encoders import build_image_text_encoder
from fgvu.extract.encoders.base import EncoderError, file_sha256
from fgvu.extract.encoders.clip import OpenClipEncoder, preprocess_images, save_open_clip_weights

TEXTS = ["two people fighting in a street", "a smiling face", ""]


@pytest.fixture(scope="module", autouse=True)
def _private_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FGVU_CACHE_DIR", str(tmp_path_factory.mktemp("fgvu-cache")))
        yield


@pytest.fixture(scope="module")
def tiny() -> OpenClipEncoder:
    return build_image_text_encoder("clip-tiny", device="cpu")


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (5, 120, 90, 3), dtype=np.uint8)


def test_shapes_normalised_one_space(tiny, images):
    image_emb = tiny.encode_images(images)
    text_emb = tiny.encode_texts(TEXTS)
    assert image_emb.shape == (5, tiny.dim) and text_emb.shape == (3, tiny.dim) and tiny.dim == 64
    assert image_emb.dtype == text_emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(image_emb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(text_emb, axis=1), 1.0, atol=1e-5)
    assert np.abs(image_emb[0] - image_emb[1]).max() > 1e-3
    assert np.abs(text_emb[0] - text_emb[1]).max() > 1e-3
    assert tiny.encode_images(images[:0]).shape == (0, 64) and tiny.encode_texts([]).shape == (0, 64)
    fp = tiny.fingerprint
    assert fp["name"] == "clip" and fp["variant"] == "clip-tiny" and fp["checkpoint"] == "random-init:0"


def test_deterministic_and_batch_invariant(tiny, images):
    again = OpenClipEncoder("fgvu-tiny-clip", None, device="cpu", batch_size=2)  # 5 images in 3 batches
    np.testing.assert_allclose(again.encode_images(images), tiny.encode_images(images), atol=1e-6)
    np.testing.assert_allclose(again.encode_texts(TEXTS), tiny.encode_texts(TEXTS), atol=1e-6)
    # Float frames are resized in float, uint8 frames in uint8 (rounded, as PIL does): nearly equal.
    as_float = tiny.encode_images(images.astype(np.float32) / 255.0)
    np.testing.assert_allclose(as_float, tiny.encode_images(images), atol=2e-3)


def test_unnormalised_option(images):
    raw = build_image_text_encoder("clip-tiny", device="cpu", normalize=False)
    norms = np.linalg.norm(raw.encode_images(images), axis=1)
    assert np.abs(norms - 1.0).max() > 1e-2


def test_local_file_round_trip(tmp_path, tiny, images):
    path = tmp_path / "tiny_clip.safetensors"
    save_open_clip_weights(tiny, path)
    loaded = build_image_text_encoder(f"clip:fgvu-tiny-clip:{path}", device="cpu")
    np.testing.assert_allclose(loaded.encode_images(images), tiny.encode_images(images), atol=1e-6)
    np.testing.assert_allclose(loaded.encode_texts(TEXTS), tiny.encode_texts(TEXTS), atol=1e-6)
    assert loaded.fingerprint["checkpoint"] == file_sha256(path)

    from safetensors.torch import load_file, save_file

    state = load_file(str(path))
    del state["ln_final.weight"]
    broken = tmp_path / "broken.safetensors"
    save_file(state, str(broken))
    with pytest.raises(EncoderError, match="ln_final.weight"):
        build_image_text_encoder(f"clip:fgvu-tiny-clip:{broken}", device="cpu")
    with pytest.raises(EncoderError, match="no such file"):
        build_image_text_encoder(f"clip:fgvu-tiny-clip:{tmp_path / 'absent.safetensors'}", device="cpu")


@pytest.mark.parametrize("resize_mode", ["shortest", "squash", "longest"])
def test_batched_preprocessing_matches_open_clip_pil_transform(resize_mode):
    """Our tensor preprocessing against open_clip's own PIL eval transform, image by image."""
    import open_clip
    from open_clip.transform import image_transform
    from PIL import Image

    rng = np.random.default_rng(1)
    # Smooth images (upsampled noise), as natural images are; PIL rounds to uint8 after resizing.
    small = [Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)) for _ in range(3)]
    batch = np.stack([np.asarray(im.resize((160, 120), Image.BICUBIC)) for im in small])
    cfg = {
        "mean": open_clip.OPENAI_DATASET_MEAN,
        "std": open_clip.OPENAI_DATASET_STD,
        "interpolation": "bicubic",
        "resize_mode": resize_mode,
        "fill_color": 0,
    }
    transform = image_transform(
        64, is_train=False, mean=cfg["mean"], std=cfg["std"], resize_mode=resize_mode, interpolation="bicubic"
    )
    reference = np.stack([transform(Image.fromarray(image)).numpy() for image in batch])
    ours = preprocess_images(torch.from_numpy(batch), (64, 64), cfg).numpy()
    assert ours.shape == reference.shape == (3, 3, 64, 64)
    assert np.abs(ours - reference).max() < 0.03  # about 2/255 in pixel units, after normalisation
    assert np.abs(ours - reference).mean() < 0.01


def test_bad_input(tiny):
    with pytest.raises(EncoderError, match="shaped"):
        tiny.encode_images(np.zeros((2, 64, 64), np.uint8))
    with pytest.raises(EncoderError, match="uint8 or float"):
        tiny.encode_images(np.zeros((2, 64, 64, 3), np.int64))
    with pytest.raises(EncoderError, match=r"\[0, 1\]"):
        tiny.encode_images(np.full((1, 64, 64, 3), 200.0, np.float32))
    with pytest.raises(EncoderError, match="list of strings"):
        tiny.encode_texts("a single string")
    with pytest.raises(EncoderError, match="ViT-Q-99"):
        build_image_text_encoder("clip:ViT-Q-99:openai", device="cpu")


def test_image_resize_keeps_or_cuts_the_sides_and_is_fingerprinted(tiny):
    """pad (the default) and squash see the whole 16:9 frame, center-crop cuts its sides off; a square
    face crop comes out the same under all three; the mode is in the fingerprint, so caches never mix."""
    from fgvu.cache import CacheSpec
    from fgvu.sampling import SamplingPlan

    rng = np.random.default_rng(3)
    wide = rng.integers(0, 256, (1, 90, 160, 3), dtype=np.uint8)
    other_sides = wide.copy()
    other_sides[:, :, :24] = 255 - other_sides[:, :, :24]  # the outer 15 % of the width on each side
    other_sides[:, :, -24:] = 255 - other_sides[:, :, -24:]
    square = rng.integers(0, 256, (2, 112, 112, 3), dtype=np.uint8)
    encoders = {mode: build_image_text_encoder("clip-tiny", device="cpu", resize=mode)
                for mode in ("pad", "squash", "center-crop")}
    assert tiny.fingerprint == encoders["pad"].fingerprint  # pad is the default
    cropped = encoders["center-crop"]
    np.testing.assert_allclose(cropped.encode_images(wide), cropped.encode_images(other_sides), atol=1e-6)
    for mode in ("pad", "squash"):
        assert np.abs(encoders[mode].encode_images(wide) - encoders[mode].encode_images(other_sides)).max() > 1e-2
    for mode in ("squash", "center-crop"):
        np.testing.assert_allclose(encoders[mode].encode_images(square), encoders["pad"].encode_images(square),
                                   atol=1e-5)
    modes = {mode: e.fingerprint["preprocessing"]["resize_mode"] for mode, e in encoders.items()}
    assert modes == {"pad": "longest", "squash": "squash", "center-crop": "shortest"}

    def spec(encoder):
        return CacheSpec(dataset="aff-wild2", task="va", sampling=SamplingPlan(), dims={"image": 64},
                         encoders={"image": encoder.fingerprint})

    problems = spec(encoders["pad"]).compatibility_problems(spec(cropped))
    assert len(problems) == 1 and "preprocessing.resize_mode ('longest' vs 'shortest')" in problems[0]
    with pytest.raises(EncoderError, match="pad, squash, center-crop"):
        build_image_text_encoder("clip-tiny", device="cpu", resize="zoom")
