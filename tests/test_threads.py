"""Torch threads chosen on purpose (one per stage-2 process unless --threads, applied and recorded) and
extraction's fixed costs (its encoders frozen out of the garbage collector)."""

import json

import pytest
import torch
from typer.testing import CliRunner

import fgvu.fusion.evaluate
import fgvu.fusion.train
from fgvu.cli import app
from fgvu.extract.config import ExtractConfig, ExtractConfigError
from fgvu.fusion.config import FitConfig, ModelConfig
from fgvu.fusion.train import fit
from fgvu.options import OptionError
from fgvu.synth.features import write_feature_cache
from fgvu.threads import stage2_threads, torch_threads
from helpers import torch_threads as outer_threads

TINY = ModelConfig(d_model=16, mlp_hidden=16, heads=2)
runner = CliRunner()


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return write_feature_cache(tmp_path_factory.mktemp("threads") / "c", videos=6, frames=160, seed=0, dims=8)


@pytest.fixture
def seen(monkeypatch) -> dict[str, list[int]]:
    """The torch thread count inside each training epoch and each prediction pass."""
    counts: dict[str, list[int]] = {"epoch": [], "predict": []}
    train_epoch, predict_windows = fgvu.fusion.train._train_epoch, fgvu.fusion.evaluate.predict_windows

    def counting_epoch(*args, **kwargs):
        counts["epoch"].append(torch.get_num_threads())
        return train_epoch(*args, **kwargs)

    def counting_predict(*args, **kwargs):
        counts["predict"].append(torch.get_num_threads())
        return predict_windows(*args, **kwargs)

    monkeypatch.setattr(fgvu.fusion.train, "_train_epoch", counting_epoch)
    monkeypatch.setattr(fgvu.fusion.evaluate, "predict_windows", counting_predict)
    return counts


def test_fit_trains_on_one_thread_by_default_records_it_and_restores_the_callers(cache, tmp_path, seen):
    with outer_threads(2):
        result = fit(cache, FitConfig(model=TINY, epochs=2, device="cpu"), tmp_path / "run", progress=False)
        assert torch.get_num_threads() == 2
    assert seen["epoch"] == [1, 1] and set(seen["predict"]) == {1}
    meta = json.loads((tmp_path / "run" / "config.json").read_text())
    assert meta["threads"] == 1 and meta["fit"]["threads"] is None
    assert result["epochs_run"] == 2


def test_threads_option_of_fit_evaluate_and_predict(cache, tmp_path, seen):
    run = tmp_path / "run"
    with outer_threads(1):
        out = runner.invoke(app, ["fit", str(cache), "--out", str(run), "--epochs", "1", "--d-model", "16",
                                  "--mlp-hidden", "16", "--heads", "2", "--device", "cpu", "--threads", "2", "--quiet"])
        assert out.exit_code == 0, out.output
        assert seen["epoch"] == [2]
        meta = json.loads((run / "config.json").read_text())
        assert meta["threads"] == 2 and FitConfig.from_dict(meta["fit"]).threads == 2
        seen["predict"].clear()
        out = runner.invoke(app, ["evaluate", str(run), "--threads", "2"])
        assert out.exit_code == 0, out.output
        assert seen["predict"] == [2] and json.loads((run / "eval.json").read_text())["threads"] == 2
        seen["predict"].clear()
        out = runner.invoke(app, ["predict", str(run), "--split", "test", "--out", str(tmp_path / "pred")])
        assert out.exit_code == 0, out.output
        assert seen["predict"] == [1]  # evaluate and predict default to one thread too
        assert torch.get_num_threads() == 1
    out = runner.invoke(app, ["evaluate", str(run), "--threads", "0"])
    assert isinstance(out.exception, OptionError)
    assert "--threads: 0 is out of range; it must be >=1" in str(out.exception)


def test_choices_and_extraction_defaults():
    assert stage2_threads(None) == 1 and stage2_threads(3) == 3
    with pytest.raises(ValueError):
        stage2_threads(0)
    with outer_threads(2):
        with torch_threads(1) as inside:
            assert inside == 1 == torch.get_num_threads()
        with torch_threads(None) as inside:
            assert inside is None and torch.get_num_threads() == 2
        assert torch.get_num_threads() == 2
    assert ExtractConfig(dataset="dvd", encoders="tiny").torch_threads == 1
    assert ExtractConfig(dataset="dvd", encoders="paper").torch_threads is None  # torch's default: every core
    assert ExtractConfig(dataset="dvd", encoders="paper", threads=3).torch_threads == 3
    with pytest.raises(ExtractConfigError, match="--threads"):
        ExtractConfig(dataset="dvd", threads=0)


def test_extraction_encodes_with_its_threads_and_the_encoders_frozen_out_of_the_collector(tmp_path, monkeypatch):
    import gc

    from fakes import FakeAdapter, fake_encoders
    from fgvu.extract.pipeline import run_extract

    adapter = FakeAdapter({"v": ("v.mp4", 120)}, ())
    monkeypatch.setattr("fgvu.extract.video_source.open_video", adapter.open_video)
    encoders = fake_encoders()
    seen_inside = []
    encode_images = encoders.image_text.encode_images

    def recording(images):
        seen_inside.append((torch.get_num_threads(), gc.get_freeze_count() > 0))
        return encode_images(images)

    monkeypatch.setattr(encoders.image_text, "encode_images", recording)
    assert gc.get_freeze_count() == 0
    with outer_threads(2):
        cfg = ExtractConfig(dataset="aff-wild2", out=str(tmp_path / "c"), progress=False, threads=1)
        assert run_extract(cfg, encoders=encoders, adapter=adapter).succeeded == 1
        assert torch.get_num_threads() == 2
    assert seen_inside and set(seen_inside) == {(1, True)}
    assert gc.get_freeze_count() == 0  # unfrozen after the run
