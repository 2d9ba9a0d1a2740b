"""The ablation grid: grid definitions, statistics, the resumable parallel runner, reports and plots."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats

from fgvu.ablations.failures import failure_analysis, va_quadrants, violence_per_video
from fgvu.fusion.run_folder import RunFolderError, load_val_frames, lock_holder
from fgvu.ablations.grid import RECON_WEIGHT, Ablation, Grid, GridError, default_grid, load_grid, unavailable_reason
from fgvu.ablations.report import report_run
from fgvu.ablations.runner import plan_grid, run_ablations
from fgvu.ablations.stats import holm, paired_t_test, summarize
from fgvu.cache import CacheSpec
from fgvu.fusion.config import AUGMENTATIONS, FitConfig
from fgvu.sampling import SamplingPlan

REPO = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TINY = {"epochs": 2, "batch_size": 32, "patience": 2}
TINY_MODEL = {"d_model": 16, "heads": 2, "mlp_hidden": 16}


def assert_png(path: Path) -> None:
    """A real, non-trivial PNG that matplotlib reads back as an image with some content."""
    import matplotlib.image

    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    assert len(data) > 5000, (path, len(data))
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image[..., :3].std() > 0.01  # not a blank canvas


# ---- statistics -------------------------------------------------------------------------


@pytest.mark.parametrize("a,b", [
    ([0.61, 0.58, 0.64, 0.60, 0.63], [0.55, 0.57, 0.59, 0.52, 0.60]),
    ([0.1, 0.4, 0.35, 0.8], [0.2, 0.3, 0.5, 0.6]),
    ([1.0, 2.0], [0.5, 2.7]),
])
def test_paired_t_test_matches_scipy(a, b):
    ours = paired_t_test(a, b)
    ref = scipy_stats.ttest_rel(a, b)
    assert ours.t == pytest.approx(ref.statistic, rel=1e-10)
    assert ours.p == pytest.approx(ref.pvalue, rel=1e-10)
    assert ours.n == len(a)
    assert ours.mean_diff == pytest.approx(np.mean(np.subtract(a, b)))


def test_paired_t_test_degenerate_cases():
    assert paired_t_test([0.5, 0.6], [0.5, 0.6]).p == 1.0  # identical runs: no evidence of a difference
    constant = paired_t_test([1.5, 2.5, 3.5], [1.0, 2.0, 3.0])  # the same non-zero gain on every seed
    assert constant.p == 0.0 and constant.t == math.inf
    assert math.isnan(paired_t_test([0.5], [0.4]).p)


def test_holm_matches_hand_computation():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> monotone 0.06
    adjusted, reject = holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert reject == [True, False, False, True]
    # nan is not a hypothesis: m = 2 here; 0.02*2 = 0.04 <= 0.05, max(0.04, 0.03*1) = 0.04
    adjusted, reject = holm([0.03, float("nan"), 0.02])
    assert adjusted[0] == pytest.approx(0.04) and adjusted[2] == pytest.approx(0.04) and math.isnan(adjusted[1])
    assert reject == [True, False, True]
    assert holm([0.5, 0.9])[0] == pytest.approx([1.0, 1.0])  # capped at 1


def test_summarize_pairs_by_seed_and_corrects():
    scores = {
        "full": {0: 0.60, 1: 0.62, 2: 0.61},
        "worse": {2: 0.50, 0: 0.51, 1: 0.515},  # order of seeds must not matter
        "same": {0: 0.61, 1: 0.60, 2: 0.62},
        "partial": {0: 0.40, 5: 0.1},  # only seed 0 pairs with the reference
    }
    out = {s.config: s for s in summarize(scores, "full")}
    expected = scipy_stats.ttest_rel([0.51, 0.515, 0.50], [0.60, 0.62, 0.61])
    assert out["worse"].p == pytest.approx(expected.pvalue)
    assert out["worse"].delta == pytest.approx(np.mean([0.51 - 0.60, 0.515 - 0.62, 0.50 - 0.61]))
    assert out["full"].mean == pytest.approx(0.61) and out["full"].std == pytest.approx(0.01)
    assert out["partial"].n == 2 and out["partial"].n_pairs == 1 and math.isnan(out["partial"].p)
    adjusted, reject = holm([out["worse"].p, out["same"].p])
    assert out["worse"].p_holm == pytest.approx(adjusted[0]) and out["worse"].significant == reject[0]
    assert not out["same"].significant


# ---- grids --------------------------------------------------------------------------------


def test_default_grid_covers_the_design_and_differs_from_full_in_one_aspect():
    g = default_grid()
    configs = g.build()
    full = configs["full"]
    assert full.model.modalities == ("v", "i", "t") and full.model.fusion == "xattn" and full.model.query == "image"
    # issue 10: the reference is the paper's full model, with both regularisers the abstract names
    assert full.augment == AUGMENTATIONS and full.recon_weight == RECON_WEIGHT > 0 and full.model.stages == "parallel"
    assert set(g.names()) >= {"v", "i", "t", "v+i", "i+t", "v+t", "concat", "xattn-sym", "sequential", "query-video",
                               "query-text", "no-aug", "no-recon", "image-8", "captions-2", "captions-8",
                               "video-8", "video-32"} | {f"aug-{a}" for a in AUGMENTATIONS}
    assert configs["v+t"].model.query == "video" and configs["t"].model.query == "text"
    assert configs["aug-mixup"].augment == ("mixup",) and configs["no-aug"].augment == ()
    assert configs["no-recon"].recon_weight == 0.0 and configs["no-recon"].augment == AUGMENTATIONS
    assert configs["sequential"].model.stages == "sequential" and configs["sequential"].recon_weight == RECON_WEIGHT
    assert configs["captions-8"].captions == 8 and configs["video-32"].video_frames == 32
    assert configs["concat"].model.fusion == "concat" and configs["concat"].augment == AUGMENTATIONS


def _spec(**plan) -> CacheSpec:
    dims = {"video": 8, "image": 8, "text": 8}
    return CacheSpec("d", "va", SamplingPlan(**plan), {}, dims)


def test_sampling_variants_are_skipped_where_the_cache_lacks_them():
    configs = default_grid().build()
    plain = {n for n, c in configs.items() if unavailable_reason(c, _spec())}
    # issue 11 added the audio rows, which a cache without audio cannot serve either
    assert plain == {"captions-8", "video-8", "video-32", "a", "i+a", "v+i+t+a"}
    assert "--caption-every 8" in unavailable_reason(configs["captions-8"], _spec())
    assert "the cache has no audio features" in unavailable_reason(configs["i+a"], _spec())
    rich = _spec(caption_every=8, video_frames=(8, 16, 32))
    rich.dims["audio"] = 8
    assert not any(unavailable_reason(c, rich) for c in configs.values())
    # a stream the configuration does not use imposes nothing
    assert unavailable_reason(FitConfig(captions=8, model=configs["v+i"].model), _spec()) is None


def test_quick_example_grid_loads():
    g = load_grid(REPO / "examples" / "grids" / "quick.toml")
    configs = g.build()
    assert g.reference == "full" and g.seeds == 3 and len(configs) >= 3
    assert all(c.epochs == configs["full"].epochs for c in configs.values())
    assert configs["no-aug"].augment == () and configs["full"].augment == AUGMENTATIONS


def test_grid_file_errors_name_the_file_and_the_problem(tmp_path):
    bad_key = tmp_path / "bad_key.toml"
    bad_key.write_text('[configs.full]\n[configs.x]\nlearning_rate = 0.1\n')
    with pytest.raises(GridError, match=r"bad_key\.toml.*configs\.x.*learning_rate"):
        load_grid(bad_key)
    bad_value = tmp_path / "bad_value.toml"
    bad_value.write_text('[configs.full]\n[configs.x]\nmodel = { fusion = "sum" }\n')
    with pytest.raises(GridError, match=r"bad_value\.toml.*fusion"):
        load_grid(bad_value)
    no_ref = tmp_path / "no_ref.toml"
    no_ref.write_text('[configs.a]\n')
    with pytest.raises(GridError, match="reference"):
        load_grid(no_ref)
    with pytest.raises(GridError, match="no such file"):
        load_grid(tmp_path / "missing.toml")


def test_grid_file_can_extend_the_default(tmp_path):
    path = tmp_path / "g.toml"
    path.write_text('extends = "default"\nexclude = ["video-32", "video-8"]\n[base]\nepochs = 3\n'
                    '[base.model]\nd_model = 32\n[configs.deep]\ngroup = "size"\nmodel = { gru_layers = 2 }\n')
    g = load_grid(path)
    configs = g.build()
    assert "video-32" not in configs and "deep" in configs and "concat" in configs
    assert configs["deep"].model.gru_layers == 2 and configs["deep"].augment == AUGMENTATIONS
    assert all(c.epochs == 3 and c.model.d_model == 32 for c in configs.values())


# ---- reports from fabricated run folders ---------------------------------------------------


def _fake_run(run: Path, task: str, seed: int = 0) -> None:
    """A run folder in the documented format, with known predictions."""
    rng = np.random.default_rng(seed)
    run.mkdir(parents=True)
    n_per, names = 120, np.array(["good", "bad", "mixed"])
    video = np.repeat(np.arange(3), n_per)
    frame = np.tile(np.arange(n_per), 3)
    if task == "va":
        y_true = rng.uniform(-1, 1, size=(3 * n_per, 2)).astype(np.float32)
        y_pred = y_true + rng.normal(scale=0.1, size=y_true.shape)
        y_pred[video == 1] = rng.uniform(-1, 1, size=((video == 1).sum(), 2))  # "bad" is noise
        mask = np.ones_like(y_true, bool)
        mask[:10, 0] = False
        extra, val = {}, {"ccc_valence": 0.7, "ccc_arousal": 0.6, "ccc_mean": 0.65}
    else:
        y_true = (rng.uniform(size=(3 * n_per, 1)) > 0.6).astype(np.float32)
        prob = np.where(y_true[:, 0] > 0, 0.8, 0.2)
        prob[(video == 1) & (frame < 30)] = 0.9  # 30 frames of "bad" flagged violent...
        prob[(video == 2) & (frame < 5)] = 0.1  # ...and a few of "mixed" missed
        y_pred = (prob >= 0.5).astype(np.float32)[:, None]
        mask = np.ones_like(y_true, bool)
        extra, val = {"prob": prob.astype(np.float32)}, {"f1_macro": 0.8, "accuracy": 0.9, "ece": 0.05}
    np.savez(run / "val_frames.npz", video_names=names, video=video, frame=frame, y_true=y_true,
             y_pred=y_pred.astype(np.float32), mask=mask, **extra)
    (run / "metrics.json").write_text(json.dumps({"task": task, "best_epoch": 2, "val": val}))
    key = "ccc_mean" if task == "va" else "f1_macro"
    lines = [{"epoch": e, "train_loss": 1.0 / e, "val": {key: 0.5 + 0.1 * e}, "lr": 1e-3, "seconds": 0.1}
             for e in range(1, 5)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


def test_report_run_va(tmp_path):
    _fake_run(tmp_path / "run", "va")
    files = report_run(tmp_path / "run")
    assert set(files) == {"curves", "va_density", "failure_analysis"}
    for key in ("curves", "va_density"):
        assert_png(files[key])
    text = files["failure_analysis"].read_text()
    worst_line = next(line for line in text.splitlines() if line.startswith("| ") and "video" not in line)
    assert "| bad |" in worst_line  # the noise video is the worst by CCC
    vf = load_val_frames(tmp_path / "run")
    quadrants = va_quadrants(vf)
    both = vf.mask.all(axis=1)
    assert sum(q["frames"] for q in quadrants) == both.sum()
    pos = both & (vf.y_true[:, 0] >= 0) & (vf.y_true[:, 1] >= 0)
    from fgvu.fusion.metrics import ccc
    assert quadrants[0]["ccc_valence"] == pytest.approx(ccc(vf.y_true[pos, 0], vf.y_pred[pos, 0]))


def test_report_run_violence(tmp_path):
    _fake_run(tmp_path / "run", "violence")
    files = report_run(tmp_path / "run", tmp_path / "plots")
    assert_png(files["confusion"])
    assert_png(files["curves"])
    vf = load_val_frames(tmp_path / "run")
    rows = {r["video"]: r for r in violence_per_video(vf)}
    truth = vf.y_true[:, 0] > 0
    bad = (vf.video == 1) & (vf.frame < 30)
    assert rows["bad"]["false_positives"] == int((bad & ~truth).sum())
    assert rows["mixed"]["false_negatives"] == int(((vf.video == 2) & (vf.frame < 5) & truth).sum())
    assert rows["good"]["false_positives"] == rows["good"]["false_negatives"] == 0
    assert violence_per_video(vf)[0]["video"] == "bad"
    assert "false negatives" in failure_analysis(tmp_path / "run", "violence")


def test_report_run_names_missing_files(tmp_path):
    with pytest.raises(RunFolderError, match="metrics.json"):
        report_run(tmp_path)


# ---- the runner on a real (small) cache ---------------------------------------------------


@pytest.fixture(scope="module")
def small_cache(tmp_path_factory):
    from fgvu.synth.features import write_feature_cache

    return write_feature_cache(tmp_path_factory.mktemp("abl") / "cache", "va", videos=8, frames=160, dims=16)


def _small_grid() -> Grid:
    return Grid(
        (Ablation("full", "reference"), Ablation("concat", "fusion", model={"fusion": "concat"}),
         # type-checks, but fit refuses a classification loss on a va cache: this configuration fails
         Ablation("bad", "broken", fit={"loss": "focal"})),
        base_fit={**TINY, "augment": AUGMENTATIONS}, base_model=TINY_MODEL,
    )


def _count_fits(monkeypatch) -> list[str]:
    import fgvu.fusion.train

    calls: list[str] = []
    real = fgvu.fusion.train.fit

    def counting_fit(cache, cfg, out, progress=True):
        calls.append(Path(out).name)
        return real(cache, cfg, out, progress=progress)

    monkeypatch.setattr(fgvu.fusion.train, "fit", counting_fit)
    return calls


def test_runner_writes_every_file_resumes_and_survives_failures(small_cache, tmp_path, monkeypatch):
    out = tmp_path / "abl"
    plan, results, files = run_ablations(small_cache, out, _small_grid(), seeds=2, jobs=2, progress=False,
                                         log=lambda *_: None)
    status = {r.run.name: r.status for r in results}
    assert status == {"full-s0": "done", "full-s1": "done", "concat-s0": "done", "concat-s1": "done",
                      "bad-s0": "failed", "bad-s1": "failed"}
    for name in ("full-s0", "concat-s1"):
        assert {"config.json", "metrics.json", "metrics.jsonl", "val_frames.npz", "model.safetensors"} <= {
            p.name for p in (out / "runs" / name).iterdir()}
    assert "FitError" in (out / "runs" / "bad-s0" / "error.txt").read_text()
    for name in ("runs.csv", "summary.csv", "failures.csv", "ablations.md", "failure_analysis.md",
                 "plots/bars.png", "plots/full_curves.png", "plots/full/va_density.png"):
        assert (out / name).is_file(), name
    for png in (out / "plots").rglob("*.png"):
        assert_png(png)

    runs = list(csv.DictReader(open(out / "runs.csv")))
    assert len(runs) == 6
    by_name = {f"{r['config']}-s{r['seed']}": r for r in runs}
    assert float(by_name["full-s1"]["ccc_mean"]) == pytest.approx(
        json.loads((out / "runs" / "full-s1" / "metrics.json").read_text())["val"]["ccc_mean"], abs=1e-5)
    assert "loss" in by_name["bad-s0"]["error"] and by_name["bad-s0"]["status"] == "failed"
    summary = {r["config"]: r for r in csv.DictReader(open(out / "summary.csv"))}
    full = [float(by_name[f"full-s{s}"]["ccc_mean"]) for s in (0, 1)]
    concat = [float(by_name[f"concat-s{s}"]["ccc_mean"]) for s in (0, 1)]
    assert float(summary["concat"]["p"]) == pytest.approx(scipy_stats.ttest_rel(concat, full).pvalue, rel=1e-3)
    assert float(summary["full"]["mean"]) == pytest.approx(np.mean(full), abs=1e-5)
    assert summary["bad"]["status"] == "failed" and summary["bad"]["n_failed"] == "2"
    failures = list(csv.DictReader(open(out / "failures.csv")))
    assert {f["seed"] for f in failures if f["config"] == "bad"} == {"0", "1"}
    md = (out / "ablations.md").read_text()
    assert "| **full** | reference | 2 |" in md and "| concat | fusion | 2 |" in md
    assert "Failed runs (2" in md and "![Mean ± std per configuration](plots/bars.png)" in md
    # issue 10: the table says where the epoch was selected and compares over videos as well as seeds
    assert "selected on a training hold-out" in md and "which model selection never saw" in md
    assert "paired bootstrap over the reported base videos" in md and "Δ over videos [95% CI]" in md

    # resume: finished runs are not repeated, failed ones are retried
    calls = _count_fits(monkeypatch)
    _, again, _ = run_ablations(small_cache, out, _small_grid(), seeds=2, jobs=1, progress=False,
                                log=lambda *_: None)
    assert sorted(calls) == ["bad-s0", "bad-s1"]
    assert [r.status for r in again if r.run.config != "bad"] == ["resumed"] * 4
    # a changed configuration is not mistaken for a finished run
    calls.clear()
    changed = Grid(_small_grid().ablations[:2], base_fit={**TINY, "augment": AUGMENTATIONS, "lr": 3e-3},
                   base_model=TINY_MODEL)
    plan = plan_grid(small_cache, changed, seeds=1)
    assert [r.name for r in plan.runs] == ["full-s0", "concat-s0"]
    run_ablations(small_cache, out, changed, seeds=1, jobs=1, progress=False, log=lambda *_: None)
    assert sorted(calls) == ["concat-s0", "full-s0"]


def test_cli_dry_run_and_report(small_cache, tmp_path):
    import typer
    from typer.testing import CliRunner

    from fgvu.commands import ablations as command

    app = typer.Typer()
    command.register(app)
    runner = CliRunner()
    result = runner.invoke(app, ["ablations", str(small_cache), "--out", str(tmp_path / "o"), "--dry-run",
                                 "--seeds", "2"])
    assert result.exit_code == 0, result.output
    assert "skipping captions-8" in result.output and "skipping video-32" in result.output
    assert f"{20 * 2} runs" in result.output  # 26 configurations; 3 sampling variants, 3 audio rows not in this cache
    assert "skipping v+i+t+a: the cache has no audio features" in result.output
    assert not (tmp_path / "o").exists()
    wrong = runner.invoke(app, ["ablations", str(small_cache), "--task", "violence", "--dry-run"])
    assert wrong.exit_code != 0 and "holds task 'va'" in str(wrong.exception)

    _fake_run(tmp_path / "run", "va")
    result = runner.invoke(app, ["report", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert_png(tmp_path / "run" / "report" / "va_density.png")


def test_resume_notices_a_cache_rewritten_at_the_same_path(tmp_path):
    import shutil

    from fgvu.cache import cache_fingerprint
    from fgvu.fusion.run_folder import is_finished as _finished
    from fgvu.synth.features import write_feature_cache

    cache = write_feature_cache(tmp_path / "cache", "va", videos=4, frames=100, dims=8)
    cfg, run = FitConfig(), tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"val": {"ccc_mean": 0.5}}))
    (run / "config.json").write_text(json.dumps({"fit": cfg.to_dict(), "cache": str(cache.resolve()),
                                                 "cache_fingerprint": cache_fingerprint(cache)}))
    assert _finished(run, cfg, cache, cache_fingerprint(cache)) == {"val": {"ccc_mean": 0.5}}
    assert cache_fingerprint(cache) == cache_fingerprint(cache)
    shutil.rmtree(cache)
    write_feature_cache(cache, "va", videos=5, frames=120, dims=8)  # re-extracted: other videos
    assert _finished(run, cfg, cache, cache_fingerprint(cache)) is None


def _children(pid: int) -> list[int]:
    """The live child processes of `pid` (zombies, already dead, are not counted)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
def test_killing_the_parent_with_kill_9_ends_its_workers(small_cache, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    grid = tmp_path / "slow.toml"  # runs long enough to be killed in the middle
    grid.write_text('reference = "full"\n[base]\nepochs = 1000\npatience = 1000\n'
                    '[base.model]\nd_model = 16\nheads = 2\nmlp_hidden = 16\n'
                    '[configs.full]\ngroup = "reference"\n')
    out = tmp_path / "abl"
    parent = subprocess.Popen([sys.executable, "-m", "fgvu.cli", "ablations", str(small_cache), "--grid", str(grid),
                               "--seeds", "2", "--jobs", "2", "--out", str(out), "--quiet"],
                              cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        # both workers are in their fit once each holds its run folder's lock
        while not all(lock_holder(out / "runs" / f"full-s{s}") not in (None, "?") for s in (0, 1)):
            assert parent.poll() is None, parent.stderr.read()
            assert time.monotonic() < deadline, "the workers never started training"
            time.sleep(0.1)
        workers = _children(parent.pid)
        holders = {int(lock_holder(out / "runs" / f"full-s{s}")) for s in (0, 1)}
        assert holders <= set(workers) and len(holders) == 2  # two workers (and multiprocessing's resource tracker)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 5
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [w for w in workers if _alive(w)], "workers outlived their parent"
    assert all(lock_holder(out / "runs" / f"full-s{s}") is None for s in (0, 1))  # nobody writes there


def test_reports_label_runs_selected_on_val_and_compare_over_videos(tmp_path):
    """Issue 10: numbers selected on val say so in every table; the paired bootstrap sits next to the t-test."""
    from fgvu.ablations.report import write_report
    from fgvu.ablations.runner import GridPlan, RunResult, RunSpec

    grid = Grid((Ablation("full", "reference"), Ablation("concat", "fusion", model={"fusion": "concat"})))
    plan = GridPlan(tmp_path / "cache", "va", grid, [0, 1], grid.build())
    results = []
    for config, seed in ((c, s) for c in ("full", "concat") for s in (0, 1)):
        run = tmp_path / "runs" / f"{config}-s{seed}"
        _fake_run(run, "va", seed=seed + (10 if config == "concat" else 0))  # metrics.json of fgvu 0.1: selected on val
        spec = RunSpec(config, "x", seed, plan.configs[config])
        results.append(RunResult(spec, "resumed", run, json.loads((run / "metrics.json").read_text())))
    files = write_report(plan, results, tmp_path / "out")
    md = files["markdown"].read_text()
    assert "| concat | fusion | 2 |" in md and "| selected on |" in md and md.count("| val |") == 2
    assert "selected on val" in md and "optimistic" in md
    summary = {r["config"]: r for r in csv.DictReader(open(files["summary"]))}
    assert summary["concat"]["selected_on"] == "selected on val" and summary["concat"]["n_videos"] == "3"
    assert 0 < float(summary["concat"]["video_p"]) <= 1 and summary["full"]["video_p"] == ""
    runs = list(csv.DictReader(open(files["runs"])))
    assert {r["selected_on"] for r in runs} == {"selected on val"} and {r["reported_on"] for r in runs} == {"val"}


def test_the_report_says_whether_audio_helps(small_cache, tmp_path):
    from fgvu.synth.features import write_feature_cache

    cache = write_feature_cache(tmp_path / "audio-cache", "va", videos=8, frames=160, dims=16, audio=True)
    grid = Grid((Ablation("full", "reference"),
                 Ablation("v+i+t+a", "audio", model={"modalities": ("v", "i", "t", "a")}),
                 Ablation("a", "audio", model={"modalities": ("a",), "query": "audio"})),
                base_fit=TINY, base_model=TINY_MODEL)
    _, results, files = run_ablations(cache, tmp_path / "o", grid, seeds=2, jobs=1, progress=False,
                                      log=lambda *_: None)
    assert {r.status for r in results} == {"done"}
    md = files["markdown"].read_text()
    row = {r["config"]: r for r in csv.DictReader(open(files["summary"]))}["v+i+t+a"]
    verdict = md.split("## Does audio help?")[1].split("\n\n")[1]
    assert verdict.startswith("`v+i+t+a` against **full**, the same configuration without audio: ")
    assert f"{float(row['delta']):+.3f}" in verdict
    expected = ("audio helps" if float(row["delta"]) > 0 else "audio hurts") if row["significant"] == "True" \
        else "no significant difference"
    assert verdict.endswith(f"{expected}.")
    assert md.count("## Does") == 1  # `a` alone changes more than adding audio: no verdict of its own
    # a cache without audio: the audio rows are skipped, and the report says so
    _, _, files = run_ablations(small_cache, tmp_path / "plain", grid, seeds=1, jobs=1, progress=False,
                                log=lambda *_: None)
    md = files["markdown"].read_text()
    assert "## Does audio help?" in md and "not measured: the cache has no audio features" in md
    assert "- a: the cache has no audio features" in md
