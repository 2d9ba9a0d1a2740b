"""Audio in stage 2: the letter a, masked steps out of attention and reconstruction, dropout, audio as
query, videos without sound, and on synthetic data audio helps while shuffled audio does not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fgvu.cache import open_cache
from fgvu.fusion import augment, losses
from fgvu.fusion.config import FitConfig, ModelConfig
from fgvu.fusion.data import FeatureData
from fgvu.fusion.evaluate import evaluate, predict
from fgvu.fusion.model import FusionModel
from fgvu.fusion.splits import DataError
from fgvu.fusion.train import fit
from fgvu.synth.features import write_feature_cache

SMALL = dict(d_model=32, mlp_hidden=64)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("fusion-audio")


@pytest.fixture(scope="module")
def audio_cache(root):
    return write_feature_cache(root / "va-audio", videos=24, frames=400, seed=0, audio=True)


def _config(modalities, **kw) -> FitConfig:
    model = ModelConfig(**{**SMALL, "modalities": tuple(modalities), **{k: kw.pop(k) for k in list(kw)
                                                                        if k in ModelConfig.__dataclass_fields__}})
    return FitConfig(model=model, **{**dict(epochs=10, batch_size=32, lr=3e-3, seed=0), **kw})


def test_audio_rows_live_on_the_image_grid_with_a_mask(audio_cache):
    view = open_cache(audio_cache)
    assert view.spec.dims["audio"] == 32 and view.audio.shape == (len(view.image), 32)
    silent = [v for v in range(len(view.videos)) if v % 5 == 4]
    for v in range(len(view.videos)):
        rows = view.image_index[view.windows_of([v])]
        assert view.audio_mask[rows].any() != (v in silent)
    assert not view.audio[~view.audio_mask].any()
    data = FeatureData(view, ("i", "a"), image_frames=8)  # audio keeps every image-grid step
    assert data.lengths == {"i": 8, "a": 16}
    idx = torch.arange(min(40, view.n_windows))
    masks = data.step_masks(idx)
    np.testing.assert_array_equal(masks["a"].numpy(), view.audio_mask[view.image_index[idx.numpy()]])
    norm = data.fit_normalization(np.flatnonzero(view.videos.split == "train"))
    x = data.inputs(idx, norm)["a"]
    assert (x[~masks["a"]] == 0).all() and x[masks["a"]].abs().sum() > 0
    with pytest.raises(DataError, match="--only audio --into CACHE"):
        FeatureData(open_cache(write_feature_cache(audio_cache.parent / "plain", videos=3, frames=100)), ("v", "a"))


@pytest.mark.parametrize("fusion,query", [("xattn", "image"), ("xattn", "audio"), ("xattn-sym", "image"),
                                          ("concat", "image"), ("concat", "audio")])
def test_masked_audio_steps_change_nothing(fusion, query):
    torch.manual_seed(0)
    cfg = ModelConfig(modalities=("i", "a"), fusion=fusion, query=query, d_model=16, heads=2, recon=True,
                      dropout=0.0)
    model = FusionModel(cfg, {"i": 6, "a": 5}, 2, "va").eval()
    x = {"i": torch.randn(3, 16, 6), "a": torch.randn(3, 16, 5)}
    mask = torch.rand(3, 16) > 0.4
    mask[2] = False  # a sample without any sound
    garbage = {"i": x["i"], "a": torch.where(mask[..., None], x["a"], torch.full_like(x["a"], 1e3))}
    out, again = model(x, {"a": mask}), model(garbage, {"a": mask})
    torch.testing.assert_close(out.steps, again.steps)
    assert torch.isfinite(out.steps).all()
    if "a" in out.attention:  # the image steps give the masked audio steps no weight at all
        assert (out.attention["a"][~mask[:, None, :].expand_as(out.attention["a"])] == 0).all()
    rec = losses.recon_loss(out.recon, x, {"a": mask})
    torch.testing.assert_close(rec, losses.recon_loss(again.recon, garbage, {"a": mask}))
    if query == "audio":
        assert out.steps.shape[1] == 16 and model.query == "a"


def test_modality_dropout_can_drop_audio():
    x = {m: torch.ones(200, 16, 4) for m in ("v", "i", "t", "a")}
    cfg = FitConfig(augment=("modality-dropout",), modality_dropout=0.3)
    out = augment.augment_features(x, cfg, torch.Generator().manual_seed(0))
    dropped = (out["a"] == 0).all(dim=(1, 2)).float().mean()
    assert 0.15 < dropped < 0.45
    assert not torch.stack([(out[m] == 0).all(dim=(1, 2)) for m in x]).all(dim=0).any()  # never all of them


def test_audio_helps_and_shuffled_audio_does_not(root, audio_cache):
    shuffled = write_feature_cache(root / "va-audio-shuffled", videos=24, frames=400, seed=0, audio=True,
                                   shuffle_audio=True)
    scores = {
        "vit": fit(audio_cache, _config("vit"), root / "vit", progress=False)["val"]["ccc_mean"],
        "vita": fit(audio_cache, _config("vita"), root / "vita", progress=False)["val"]["ccc_mean"],
        "shuffled": fit(shuffled, _config("vita"), root / "vita-shuffled", progress=False)["val"]["ccc_mean"],
    }
    assert scores["vita"] > scores["vit"] + 0.05, scores
    assert scores["shuffled"] < scores["vit"] + 0.02, scores


def test_a_video_without_audio_trains_and_predicts(root, audio_cache, tmp_path):
    run = root / "vita"  # trained by the test above when it ran; otherwise train it here
    if not (run / "metrics.json").exists():
        fit(audio_cache, _config("vita", epochs=2), run, progress=False)
    view = open_cache(audio_cache)
    silent = [str(view.videos.name[v]) for v in range(len(view.videos)) if v % 5 == 4]
    result = evaluate(run, split="test")
    tested = [name for name in result["per_video"] if name in silent]
    val = evaluate(run)
    assert tested or [name for name in val["per_video"] if name in silent]
    for name in tested:
        assert np.isfinite(result["per_video"][name]["ccc_mean"])
    files = predict(run, tmp_path / "pred", split="test")
    assert {f.stem for f in files} >= set(tested)
    for f in files:  # image_location,valence,arousal
        values = np.array([[float(v) for v in line.split(",")[1:]] for line in f.read_text().splitlines()[1:]])
        assert len(values) and np.isfinite(values).all() and np.abs(values).max() <= 1
