"""`fgvu fit`, `fgvu evaluate`, `fgvu predict` through the CLI: defaults, fgvu.toml, errors."""

import json
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from fgvu.cli import app
from fgvu.errors import FgvuError
from fgvu.fusion.checkpoint import load_checkpoint
from fgvu.fusion.config import FitConfig
from fgvu.synth.features import write_feature_cache

runner = CliRunner()
TINY = ["--d-model", "16", "--mlp-hidden", "16", "--heads", "2", "--quiet"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return write_feature_cache(tmp_path_factory.mktemp("cli") / "va", videos=8, frames=200, seed=0, dims=16)


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_fit_evaluate_predict(cache, tmp_path):
    run = tmp_path / "run"
    result = invoke("fit", cache, "--modalities", "v,i,t", "--fusion", "concat", "--epochs", 2, "--out", run,
                    "--augment", "noise,mixup", "--recon-weight", "0.1", "--lr", "0.002", *TINY)
    assert result.exit_code == 0, result.output
    assert "best epoch" in result.output and "ccc_mean" in result.output
    meta = json.loads((run / "config.json").read_text())
    cfg = FitConfig.from_dict(meta["fit"])
    assert cfg.model.fusion == "concat" and cfg.model.d_model == 16 and cfg.recon_weight == 0.1
    assert load_checkpoint(run).model.decoders is not None  # the autoencoding term was on
    assert cfg.augment == ("noise", "mixup") and cfg.lr == 0.002 and cfg.epochs == 2
    assert cfg.batch_size == FitConfig().batch_size  # untouched options keep the dataclass default

    result = invoke("evaluate", run)
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "metrics.json").read_text())["val"]
    assert f"{metrics['ccc_mean']:.4f}" in result.output
    for name in meta["splits"]["val"]:
        assert name in result.output
    assert (run / "eval.json").exists()

    result = invoke("predict", run, "--split", "test", "--out", tmp_path / "pred")
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "pred").glob("*.txt"))) >= 1


def test_defaults_come_from_caches_folder_and_fgvu_toml(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_feature_cache(tmp_path / "caches" / "mini", videos=5, frames=150, seed=1, dims=8)
    (tmp_path / "fgvu.toml").write_text("[fit]\nepochs = 1\nbatch_size = 8\n[model]\nd_model = 16\nheads = 2\n")
    result = invoke("fit", "--modalities", "i,t", "--batch-size", 4, "--quiet")
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "synthetic-va-it-xattn-s0"
    cfg = FitConfig.from_dict(json.loads((run / "config.json").read_text())["fit"])
    assert cfg.epochs == 1 and cfg.model.d_model == 16  # from fgvu.toml
    assert cfg.batch_size == 4  # the command line beats fgvu.toml
    assert cfg.model.modalities == ("i", "t") and cfg.lr == FitConfig().lr
    # --dataset picks caches/<dataset>; with two caches and no choice, the error lists them
    write_feature_cache(tmp_path / "caches" / "other", videos=5, frames=150, seed=2, dims=8)
    result = invoke("fit", "--dataset", "mini", "--modalities", "t", "--quiet", "--out", tmp_path / "r2")
    assert result.exit_code == 0, result.output
    result = invoke("fit", "--modalities", "t")
    assert isinstance(result.exception, FgvuError) and "mini, other" in str(result.exception)


@pytest.mark.parametrize("args, message", [
    (["--modalities", "v,x"], r"unknown letters \['x'\]"),
    (["--task", "violence"], "disagrees with cache"),
    (["--augment", "cutout"], "unknown augmentations"),
    (["--fusion", "sum"], "'sum' is not one of"),
    (["--image-frames", "5"], "image frames per window"),
])
def test_user_mistakes_are_clear_errors(cache, tmp_path, args, message):
    result = invoke("fit", cache, "--out", tmp_path / "run", "--epochs", 1, *TINY, *args)
    assert isinstance(result.exception, FgvuError), result.output
    assert re.search(message, str(result.exception))


def test_missing_modality_lists_what_the_cache_has(tmp_path):
    partial = write_feature_cache(tmp_path / "p", videos=4, frames=150, dims={"image": 8, "video": 8})
    result = invoke("fit", partial, "--modalities", "i,t", "--out", tmp_path / "run", *TINY)
    assert isinstance(result.exception, FgvuError)
    assert "no t (text) features; it has: v (video), i (image)" in str(result.exception)


def test_console_error_is_one_line_without_traceback(cache, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", "from fgvu.cli import main; main()", "fit", str(cache), "--modalities", "q",
         "--out", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "error: --modalities 'q': unknown letters ['q']" in proc.stderr


def test_help_shows_dataclass_defaults():
    result = invoke("fit", "--help")
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert f"(default: {FitConfig().lr})" in text and "(default: v,i,t)" in text


def test_fit_keeps_a_finished_run_made_with_other_options(cache, tmp_path):
    run = tmp_path / "run"
    args = ["fit", cache, "--modalities", "t", "--epochs", 1, "--out", run, *TINY]
    assert invoke(*args).exit_code == 0
    finished = (run / "metrics.json").read_bytes()
    result = invoke(*args, "--lr", "0.005")
    assert isinstance(result.exception, FgvuError), result.output
    assert re.search(r"another configuration \(lr: 0\.001 -> 0\.005\).*--force", str(result.exception))
    assert (run / "metrics.json").read_bytes() == finished  # nothing was deleted
    assert invoke(*args).exit_code == 0  # the same options: a re-run in place
    result = invoke(*args, "--lr", "0.005", "--force")
    assert result.exit_code == 0, result.output
    assert json.loads((run / "config.json").read_text())["fit"]["lr"] == 0.005
