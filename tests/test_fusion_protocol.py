"""The protocol end to end: selection apart from reporting in fit, `fgvu score` against `fgvu evaluate`,
another cache evaluated correctly, the report on test, and group k-fold cross-validation."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from fgvu.cache import open_cache
from fgvu.cli import app
from fgvu.fusion.config import FitConfig, ModelConfig
from fgvu.fusion.crossval import run_cv
from fgvu.fusion.evaluate import evaluate, predict, predict_from_sample
from fgvu.fusion.splits import DataError, base_videos, rows_of_names
from fgvu.fusion.train import fit
from fgvu.scoring import score_files
from fgvu.submissions import SubmissionError
from fgvu.synth.features import write_feature_cache

SMALL = ModelConfig(d_model=16, heads=2, mlp_hidden=16)
runner = CliRunner()


def config(**kw) -> FitConfig:
    model = {k: kw.pop(k) for k in list(kw) if k in ModelConfig.__dataclass_fields__}
    return FitConfig(model=ModelConfig(**{**SMALL.to_dict(), **model}), **{"epochs": 3, "batch_size": 32, **kw})


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("protocol")


@pytest.fixture(scope="module")
def cache(root):
    return write_feature_cache(root / "va", videos=16, frames=160, seed=0, dims=8, track_pairs=3)


@pytest.fixture(scope="module")
def run(root, cache):
    out = root / "run"
    return out, fit(cache, config(), out, progress=False)


def write_va_annotations(view, split: str, folder):
    """Aff-Wild2 annotation files of a split, from the cache's targets (-5 where invalid)."""
    folder.mkdir(parents=True, exist_ok=True)
    for v in np.flatnonzero(view.videos.split == split):
        lo, n = int(view.videos.frame_offset[v]), int(view.videos.n_frames[v])
        values = np.where(view.target_mask[lo:lo + n], view.targets[lo:lo + n], -5.0)
        (folder / f"{view.videos.name[v]}.txt").write_text(
            "valence,arousal\n" + "".join(f"{a:.6f},{b:.6f}\n" for a, b in values))
    return folder


def test_fit_selects_on_training_videos_and_reports_on_untouched_ones(run, cache):
    out, result = run
    meta = json.loads((out / "config.json").read_text())
    view = open_cache(cache)
    groups = {k: set(base_videos(view)[rows_of_names(view, meta["splits"][k])].tolist())
              for k in ("train", "select", "val")}
    assert not groups["train"] & groups["select"] and not groups["select"] & groups["val"]
    assert not groups["train"] & groups["val"]
    assert result["selected_on"] == "holdout" and result["reported_on"] == "val"
    assert result["label"] == "selected on a training hold-out" and result["n_select_videos"] == len(
        meta["splits"]["select"])
    assert set(result["select"]) == {"ccc_valence", "ccc_arousal", "ccc_mean"}  # selection has no intervals
    assert meta["encoders"] == json.loads((cache / "cache.json").read_text())["encoders"]


def test_selecting_on_val_stays_available_and_is_labelled(root, cache):
    result = fit(cache, config(select_on="val"), root / "on-val", progress=False)
    assert result["label"] == "selected on val" and result["selected_on"] == "val"
    assert result["select"]["ccc_mean"] == pytest.approx(result["val"]["ccc_mean"])  # the same videos
    assert "selected on val" in evaluate(root / "on-val")["selection"]
    result = runner.invoke(app, ["fit", str(cache), "--out", str(root / "on-val-cli"), "--select-on", "val",
                                 "--epochs", "1", "--d-model", "16", "--heads", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "selected on val" in result.output and "95% CI over base videos" in result.output


def test_score_agrees_with_evaluate(run, cache, tmp_path):
    out, _ = run
    view = open_cache(cache)
    annotations = write_va_annotations(view, "val", tmp_path / "Validation_Set")
    evaluated = evaluate(out)["metrics"]
    predict(out, tmp_path / "per-video", split="val")
    scored = score_files(tmp_path / "per-video", annotations, "va")["metrics"]
    for key in ("ccc_valence", "ccc_arousal", "ccc_mean"):
        assert scored[key] == pytest.approx(evaluated[key], abs=1e-5)
        assert scored[f"{key}_ci"] == pytest.approx(evaluated[f"{key}_ci"], abs=1e-4)
    # the single ABAW file, driven by a shuffled sample, scores the same through the CLI
    rows = [f"{p.stem}/{f + 1:05d}.jpg" for p in sorted(annotations.glob("*.txt"))
            for f in range(len(p.read_text().splitlines()) - 1)]
    sample = tmp_path / "sample.txt"
    sample.write_text("image_location,valence,arousal\n"
                      + "".join(f"{rows[i]},,\n" for i in np.random.default_rng(0).permutation(len(rows))))
    written = predict_from_sample(out, tmp_path / "abaw", sample, split="val")
    assert written.rows == len(rows) and written.filled == 0
    result = runner.invoke(app, ["score", str(tmp_path / "abaw" / "predictions.txt"), str(annotations),
                                 "--task", "va", "--out", str(tmp_path / "score.json")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "score.json").read_text())["metrics"]["ccc_mean"] == pytest.approx(
        evaluated["ccc_mean"], abs=1e-5)
    assert f"{evaluated['ccc_mean']:.4f}" in result.output
    # a submission that misses annotated frames is not scored
    first = tmp_path / "per-video" / sorted(annotations.glob("*.txt"))[0].name
    first.write_text("\n".join(first.read_text().splitlines()[:10]) + "\n")
    with pytest.raises(SubmissionError, match="annotated frames have no prediction"):
        score_files(tmp_path / "per-video", annotations, "va")


def test_violence_score_agrees_with_evaluate(root, tmp_path):
    cache = write_feature_cache(root / "violence", task="violence", videos=12, frames=160, seed=1, dims=8)
    out = root / "violence-run"
    fit(cache, config(), out, progress=False)
    view = open_cache(cache)
    annotations = tmp_path / "annotations"
    annotations.mkdir()
    for v in np.flatnonzero(view.videos.split == "val"):
        lo, n = int(view.videos.frame_offset[v]), int(view.videos.n_frames[v])
        labels = np.where(view.target_mask[lo:lo + n, 0], view.targets[lo:lo + n, 0], -5).astype(int)
        (annotations / f"{view.videos.name[v]}.csv").write_text(
            "Frame,Label\n" + "".join(f"{f},{y}\n" for f, y in enumerate(labels)))
    evaluated = evaluate(out)["metrics"]
    predict(out, tmp_path / "pred", split="val")
    scored = score_files(tmp_path / "pred", annotations, "violence")["metrics"]
    for key in ("f1_macro", "accuracy", "ece"):
        assert scored[key] == pytest.approx(evaluated[key], abs=1e-5)
    assert scored["confusion"] == evaluated["confusion"]


def test_another_cache_is_evaluated_on_its_own_split_and_never_overwrites_eval_json(run, root, cache):
    out, _ = run
    evaluate(out)
    own = (out / "eval.json").read_bytes()
    # the same encoders (same synthetic seed and dims), other videos
    other = write_feature_cache(root / "other", videos=10, frames=120, seed=0, dims=8)
    result = evaluate(out, cache=other)
    other_view = open_cache(other)
    assert sorted(result["per_video"]) == sorted(other_view.videos.name[other_view.videos.split == "val"].tolist())
    assert (out / "eval.json").read_bytes() == own
    assert result["file"].startswith(str(out / "eval-other-")) and result["file"].endswith("-val.json")
    assert json.loads(open(result["file"]).read())["cache"] == str(other)
    # other encoders: refused, naming the encoder
    foreign = write_feature_cache(root / "foreign", videos=10, frames=120, seed=5, dims=8)
    with pytest.raises(DataError, match=r"not made with the encoders of run .*image: run synthetic-image"):
        evaluate(out, cache=foreign)
    with pytest.raises(DataError, match="not made with the encoders"):
        predict(out, root / "p", split="test", cache=foreign)


def test_report_on_labelled_test_videos(root, cache):
    result = fit(cache, config(report_split="test"), root / "on-test", progress=False)
    meta = json.loads((root / "on-test" / "config.json").read_text())
    view = open_cache(cache)
    assert result["reported_on"] == "test" and "ccc_mean_ci" in result["test"] and "val" not in result
    assert sorted(meta["splits"]["test"]) == sorted(view.videos.name[view.videos.split == "test"].tolist())
    assert evaluate(root / "on-test", split="test")["metrics"]["ccc_mean"] == pytest.approx(
        result["test"]["ccc_mean"], abs=1e-6)


def test_cross_validation_runs_every_fold_and_resumes(root, cache, monkeypatch):
    out = root / "cv"
    summary = run_cv(cache, config(epochs=2), out, folds=3, progress=False, log=lambda *_: None)
    folds = [json.loads((out / f"fold-{k}" / "metrics.json").read_text()) for k in range(3)]
    values = [f["val"]["ccc_mean"] for f in folds]
    assert summary["metrics"]["ccc_mean"]["mean"] == pytest.approx(np.mean(values))
    assert summary["metrics"]["ccc_mean"]["std"] == pytest.approx(np.std(values, ddof=1))
    reported = [set(json.loads((out / f"fold-{k}" / "config.json").read_text())["splits"]["val"]) for k in range(3)]
    assert not (reported[0] & reported[1] or reported[0] & reported[2] or reported[1] & reported[2])
    assert "mean ± std" in (out / "cv.md").read_text()
    calls = []
    monkeypatch.setattr("fgvu.fusion.train.fit", lambda *a, **k: calls.append(a))
    assert run_cv(cache, config(epochs=2), out, folds=3, progress=False, log=lambda *_: None) == summary
    assert calls == []  # finished folds are kept
    result = runner.invoke(app, ["cv", str(cache), "--fold", "1"])
    assert result.exit_code != 0 and "runs every fold" in str(result.exception)
