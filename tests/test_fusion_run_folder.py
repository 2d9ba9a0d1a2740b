"""The run folder: one fit at a time (a lock released even by kill -9), unfinished runs refused by
evaluate and predict, and every file readable alike."""

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fgvu.cli import app
from fgvu.fusion import run_folder
from fgvu.fusion.config import FitConfig, ModelConfig
from fgvu.fusion.evaluate import evaluate, predict
from fgvu.fusion.run_folder import RunFolderError
from fgvu.fusion.train import fit
from fgvu.synth.features import write_feature_cache

REPO = Path(__file__).resolve().parents[1]
TINY = ModelConfig(d_model=16, mlp_hidden=16, heads=2)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return write_feature_cache(tmp_path_factory.mktemp("runs") / "va", videos=8, frames=200, seed=0, dims=16)


def _cfg(**kw) -> FitConfig:
    return FitConfig(model=TINY, epochs=2, batch_size=16, **kw)


def _wait_for(condition, what: str, proc: subprocess.Popen, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the fit ended (rc {proc.returncode}) before {what}: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_a_second_fit_is_refused_while_the_first_runs_and_kill_9_frees_the_folder(cache, tmp_path):
    run = tmp_path / "run"
    # a real fit in another process, slow enough to be caught in the middle (patience keeps it going)
    proc = subprocess.Popen(
        [sys.executable, "-m", "fgvu.cli", "fit", str(cache), "--out", str(run), "--epochs", "1000",
         "--patience", "1000", "--d-model", "16", "--mlp-hidden", "16", "--heads", "2", "--quiet"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: (run / run_folder.CONFIG).exists(), "its config.json", proc)
        assert run_folder.lock_holder(run) == str(proc.pid)
        with pytest.raises(RunFolderError, match=rf"being written by another fit \(pid {proc.pid}, lock .*fit.lock\)"):
            fit(cache, _cfg(), run, progress=False)
        result = CliRunner().invoke(app, ["fit", str(cache), "--out", str(run), "--quiet"])
        assert isinstance(result.exception, RunFolderError)  # fgvu's main prints it as one line, exit 2
        with pytest.raises(RunFolderError, match=rf"unfinished: metrics.json is missing \(a fit is still "
                                                 rf"writing it \(pid {proc.pid}\)\); pass --allow-unfinished"):
            evaluate(run)
        assert proc.poll() is None  # the refused fits left the running one alone
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert run_folder.lock_holder(run) is None  # the kernel released the flock of the killed process
    with pytest.raises(RunFolderError, match="unfinished.*interrupted or failed"):
        predict(run, tmp_path / "pred")
    assert not (tmp_path / "pred").exists()
    done = fit(cache, _cfg(), run, progress=False, overwrite=True)  # the folder is free again
    assert done["epochs_run"] == 2 and evaluate(run)["metrics"]["ccc_mean"] == pytest.approx(done["val"]["ccc_mean"])


def test_cli_evaluate_and_predict_take_allow_unfinished(cache, tmp_path):
    run = tmp_path / "run"
    fit(cache, _cfg(), run, progress=False)
    (run / run_folder.METRICS).unlink()  # as if the fit had been killed after its last checkpoint
    runner = CliRunner()
    for args in (["evaluate", str(run)], ["predict", str(run), "--out", str(tmp_path / "p")]):
        result = runner.invoke(app, args)
        assert isinstance(result.exception, RunFolderError) and "--allow-unfinished" in str(result.exception)
        result = runner.invoke(app, [*args, "--allow-unfinished"])
        assert result.exit_code == 0, result.output
    assert any((tmp_path / "p").iterdir())


def test_every_file_of_a_run_gets_the_same_mode(cache, tmp_path):
    saved = os.umask(0o022)
    try:
        run = tmp_path / "run"
        fit(cache, _cfg(), run, progress=False)
        evaluate(run)
    finally:
        os.umask(saved)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in run.iterdir() if p.is_file()}
    assert run_folder.MODEL in modes and run_folder.METRICS in modes and run_folder.LOCK in modes
    assert set(modes.values()) == {0o644}, modes


def test_a_fit_that_fails_before_writing_leaves_no_folder(tmp_path):
    with pytest.raises(Exception, match="no such directory"):
        fit(tmp_path / "no-cache", _cfg(), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
