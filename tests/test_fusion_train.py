"""Training on synthetic caches: it learns, fusion helps, runs are reproducible on CPU and reloadable.

Margins were checked by hand on seeds 0-3 (fused val CCC 0.68-0.82, best single modality
0.44-0.59, shuffled labels -0.14-0.25); the tests use seed 0.
"""

import json
import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from fgvu.cache import cache_fingerprint
from fgvu.fusion.checkpoint import load_checkpoint, save_weights
from fgvu.fusion.config import FitConfig, ModelConfig
from fgvu.fusion.evaluate import evaluate, predict
from fgvu.fusion.train import FitError, fit
from fgvu.synth.features import write_feature_cache

SMALL = ModelConfig(d_model=32, mlp_hidden=64)


def config(modalities=("v", "i", "t"), **kw):
    model_kw = {k: kw.pop(k) for k in list(kw) if k in ModelConfig.__dataclass_fields__}
    base = dict(epochs=10, batch_size=32, lr=3e-3, seed=0)
    return FitConfig(model=ModelConfig(**{**SMALL.to_dict(), "modalities": modalities, **model_kw}), **{**base, **kw})


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("train")


@pytest.fixture(scope="module")
def va_cache(root):
    return write_feature_cache(root / "va", task="va", videos=24, frames=400, seed=0)


@pytest.fixture(scope="module")
def fused_run(root, va_cache):
    out = root / "run-vit"
    return out, fit(va_cache, config(), out, progress=False)


def _ccc(x, y):
    mx, my = x.mean(), y.mean()
    return 2 * ((x - mx) * (y - my)).mean() / (x.var() + y.var() + (mx - my) ** 2)


def test_fusion_learns_beats_shuffled_labels_and_every_single_modality(root, va_cache, fused_run):
    _, fused = fused_run
    shuffled_cache = write_feature_cache(root / "va-shuffled", task="va", videos=24, frames=400, seed=0,
                                         shuffle_train_labels=True)
    shuffled = fit(shuffled_cache, config(), root / "run-shuffled", progress=False)
    single = {m: fit(va_cache, config((m,)), root / f"run-{m}", progress=False)["val"]["ccc_mean"] for m in "ivt"}
    ccc = fused["val"]["ccc_mean"]
    assert ccc >= 0.5
    assert ccc - shuffled["val"]["ccc_mean"] >= 0.3, (ccc, shuffled["val"])
    assert ccc > max(single.values()) + 0.05, (ccc, single)


def test_run_folder_contents(fused_run, va_cache):
    out, result = fused_run
    meta = json.loads((out / "config.json").read_text())
    assert meta["task"] == "va" and meta["dims"] == {"v": 48, "i": 48, "t": 32} and meta["n_steps"] == 16
    assert FitConfig.from_dict(meta["fit"]) == config()
    assert meta["cache_fingerprint"] == cache_fingerprint(va_cache)
    # selection apart from reporting (issue 10): train, select and val are three disjoint sets
    train, select, val = (set(meta["splits"][k]) for k in ("train", "select", "val"))
    assert train and select and val and not (train & select or train & val or select & val)
    assert result["selected_on"] == meta["selected_on"] == "holdout" and result["reported_on"] == "val"
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == list(range(1, result["epochs_run"] + 1))
    assert all({"train_loss", "select", "lr", "seconds"} <= set(r) for r in lines)
    best = max(lines, key=lambda r: r["select"]["ccc_mean"])
    assert best["epoch"] == result["best_epoch"] and best["select"] == result["select"]
    assert json.loads((out / "metrics.json").read_text()) == result
    assert set(result["val"]) == {"ccc_valence", "ccc_arousal", "ccc_mean"} | {
        f"{k}_ci" for k in ("ccc_valence", "ccc_arousal", "ccc_mean")}
    for key in ("ccc_valence", "ccc_arousal", "ccc_mean"):
        lo, hi = result["val"][f"{key}_ci"]
        assert lo <= result["val"][key] <= hi and hi - lo > 0.01
    assert result["bootstrap"]["draws"] == 1000 and result["bootstrap"]["n_groups"] == len(val)
    # early stopping: training ends at the last epoch or `patience` epochs after the best one
    cfg = config()
    assert result["epochs_run"] == cfg.epochs or result["epochs_run"] - result["best_epoch"] == cfg.patience
    # val_frames.npz: every frame of the reported videos; its metrics, recomputed independently, match
    frames = np.load(out / "val_frames.npz")
    assert sorted(frames["video_names"].tolist()) == sorted(meta["splits"]["val"])
    for k, name in enumerate(("valence", "arousal")):
        m = frames["mask"][:, k]
        assert result["val"][f"ccc_{name}"] == pytest.approx(_ccc(frames["y_true"][m, k].astype(np.float64),
                                                                  frames["y_pred"][m, k].astype(np.float64)), abs=1e-5)
    assert frames["mask"].sum() < frames["mask"].size  # the invalid frames are excluded


def test_evaluate_reproduces_fit_and_checkpoint_round_trip(fused_run, tmp_path):
    out, result = fused_run
    report = evaluate(out)
    for key, value in result["val"].items():
        assert report["metrics"][key] == pytest.approx(value, abs=1e-6)
    stored = json.loads((out / "eval.json").read_text())["metrics"]
    assert stored.keys() == report["metrics"].keys()
    assert all(stored[k] == pytest.approx(v) for k, v in report["metrics"].items())  # CIs included
    assert len(report["per_video"]) == result["n_val_videos"]
    frames = np.load(out / "val_frames.npz")
    assert report["n_frames"] == len(frames["mask"]) > report["n_valid"] == frames["mask"].all(axis=1).sum()
    assert report["n_valid"] == sum(v["n_valid"] for v in report["per_video"].values())
    # round trip: load, save, load again -> identical weights, normalisation and predictions
    first = load_checkpoint(out)
    save_weights(tmp_path, first.model, first.norm)
    (tmp_path / "config.json").write_text((out / "config.json").read_text())
    second = load_checkpoint(tmp_path)
    a, b = load_file(str(out / "model.safetensors")), load_file(str(tmp_path / "model.safetensors"))
    assert a.keys() == b.keys() and {k for k in a if k.startswith("norm.")} == {
        f"norm.{m}.{s}" for m in "vit" for s in ("mean", "std")}
    assert all(torch.equal(a[k], b[k]) for k in a)
    x = {"v": torch.randn(3, 16, 48), "i": torch.randn(3, 16, 48), "t": torch.randn(3, 4, 32)}
    with torch.no_grad():
        assert torch.equal(first.model(x).steps, second.model(x).steps)
    # a test-split evaluation goes to its own file
    evaluate(out, split="test")
    assert (out / "eval-test.json").exists()


def test_config_without_cache_is_a_checkpoint_error(fused_run, tmp_path):
    import shutil

    from fgvu.fusion.run_folder import RunFolderError as CheckpointError

    out, _ = fused_run
    meta = json.loads((out / "config.json").read_text())
    del meta["cache"]
    (tmp_path / "config.json").write_text(json.dumps(meta))
    shutil.copy(out / "model.safetensors", tmp_path)
    with pytest.raises(CheckpointError, match=r"config.json: missing keys \['cache'\]"):
        evaluate(tmp_path)


def test_predict_writes_aff_wild2_submission_files(fused_run, va_cache, tmp_path):
    from fgvu.cache import open_cache

    out, _ = fused_run
    view = open_cache(va_cache)
    written = predict(out, tmp_path / "pred", split="test")
    test_videos = view.videos.name[view.videos.split == "test"].tolist()
    assert sorted(p.stem for p in written) == sorted(test_videos)
    name = test_videos[0]
    lines = (tmp_path / "pred" / f"{name}.txt").read_text().splitlines()
    n = int(view.videos.n_frames[view.videos.name == name][0])
    assert lines[0] == "image_location,valence,arousal" and len(lines) == n + 1
    assert lines[1].startswith(f"{name}/00001.jpg,") and lines[-1].startswith(f"{name}/{n:05d}.jpg,")
    values = np.array([[float(v) for v in line.split(",")[1:]] for line in lines[1:]])
    assert np.abs(values).max() <= 1 and values.std(axis=0).min() > 0.05


def test_same_seed_same_run_other_seed_other_run(va_cache, tmp_path):
    cfg = config(("i", "t"), epochs=3)
    a = fit(va_cache, cfg, tmp_path / "a", progress=False)
    b = fit(va_cache, cfg, tmp_path / "b", progress=False)
    c = fit(va_cache, config(("i", "t"), epochs=3, seed=1), tmp_path / "c", progress=False)
    assert a["val"] == b["val"]
    wa, wb = load_file(str(tmp_path / "a/model.safetensors")), load_file(str(tmp_path / "b/model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a["val"] != c["val"]


def test_violence_cache_learns(root, tmp_path):
    cache = write_feature_cache(root / "violence", task="violence", videos=24, frames=400, seed=0)
    result = fit(cache, config(), tmp_path / "run", progress=False)
    val = result["val"]
    assert set(val) == {"f1_macro", "accuracy", "confusion", "ece", "f1_macro_ci", "accuracy_ci", "ece_ci"}
    assert val["f1_macro"] >= 0.7  # chance is about 0.5
    frames = np.load(tmp_path / "run/val_frames.npz")
    np.testing.assert_array_equal(frames["y_pred"][:, 0], (frames["prob"] >= 0.5).astype(np.float32))
    written = predict(tmp_path / "run", tmp_path / "pred", split="test")
    lines = written[0].read_text().splitlines()
    assert written[0].suffix == ".csv" and lines[0] == "Frame_Number,Predicted_Label,Violence_Probability"
    assert lines[1].startswith("0,") and {line.split(",")[1] for line in lines[1:]} <= {"0", "1"}
    # the probability is there and the label is its thresholded value
    assert all(line.split(",")[1] == str(int(float(line.split(",")[2]) >= 0.5)) for line in lines[1:])


def test_every_regulariser_and_schedule_runs(va_cache, tmp_path):
    cfg = config(("v", "t"), epochs=2, d_model=16, mlp_hidden=16, fusion="xattn-sym", query="text",
                 augment=("noise", "modality-dropout", "temporal-mask", "mixup"), recon_weight=0.5,
                 schedule="onecycle", loss="ccc+mse", image_frames=8, captions=2)
    result = fit(va_cache, cfg, tmp_path / "run", progress=False)
    assert np.isfinite(result["val"]["ccc_mean"])
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt.model.decoders is not None and ckpt.meta["n_steps"] == 2  # text query: 2 captions per window
    lines = [json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["train_loss"]) for r in lines)


def test_bad_training_requests(va_cache, tmp_path):
    with pytest.raises(FitError, match="loss 'ce' does not fit the va task"):
        fit(va_cache, config(loss="ce"), tmp_path / "a", progress=False)
    with pytest.raises(FitError, match="unknown augmentations"):
        fit(va_cache, config(augment=("cutout",)), tmp_path / "b", progress=False)


def test_unavailable_or_unknown_device_is_a_fit_error(va_cache, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(FitError, match="no CUDA GPU is available"):
        fit(va_cache, config(device="cuda"), tmp_path / "a", progress=False)
    with pytest.raises(FitError, match="'gpu0' is not a torch device"):
        fit(va_cache, config(device="gpu0"), tmp_path / "b", progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.parametrize("schedule", ["onecycle", "cosine"])
@pytest.mark.parametrize("epochs,steps_per_epoch,warmup", [(1, 1, 1.0), (2, 1, 1.0), (30, 1, 1.0), (3, 1, 0.0),
                                                            (1, 4, 1.0), (5, 2, 0.5)])
def test_lr_schedule_steps_through_short_runs(schedule, epochs, steps_per_epoch, warmup):
    from fgvu.fusion.train import _lr_schedule

    cfg = FitConfig(epochs=epochs, schedule=schedule, warmup_epochs=warmup, lr=1e-3)
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    scheduler = _lr_schedule(optimizer, cfg, steps_per_epoch)
    used = []
    for _ in range(epochs * steps_per_epoch):
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert all(np.isfinite(used)) and 0 < max(used) <= cfg.lr * (1 + 1e-9)


@pytest.mark.parametrize("device,expected", [("cuda:1", [1]), ("cuda", [0]), ("cpu", [])])
def test_seeded_forks_the_run_device_and_sets_cublas_workspace(monkeypatch, device, expected):
    import contextlib

    from fgvu.fusion import train

    forked, deterministic = [], []

    @contextlib.contextmanager
    def fake_fork_rng(devices):
        forked.append(list(devices))
        yield

    monkeypatch.setattr(torch.random, "fork_rng", fake_fork_rng)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    def record(on, warn_only=False):
        deterministic.append((on, os.environ.get("CUBLAS_WORKSPACE_CONFIG")))

    monkeypatch.setattr(torch, "use_deterministic_algorithms", record)
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", "unset")
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")
    with train._seeded(0, device):
        pass
    assert forked == [expected]
    if expected:  # the workspace is configured before deterministic algorithms are switched on, then restored
        assert deterministic[0] == (True, ":4096:8") and deterministic[1][0] is False
    else:
        assert deterministic == [] and "CUBLAS_WORKSPACE_CONFIG" not in os.environ


def test_seeded_restores_the_global_random_state():
    from fgvu.fusion.train import _seeded

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    with _seeded(7, "cpu"):
        inside = torch.rand(3)
    assert torch.equal(torch.rand(3), expected) and not torch.equal(inside, expected)
