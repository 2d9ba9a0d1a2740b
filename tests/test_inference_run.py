"""A trained run on new videos: raw-video prediction equals the cache path, the API, the CLI, and streaming.

One small run is shared by the module: three synthetic videos through the tiny encoders, two epochs
of a small fusion head (v,i,t).
"""

import shutil
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from fgvu.cache import open_cache
from fgvu.cli import app
from fgvu.extract.config import ExtractConfig
from fgvu.extract.datasets import DatasetError, build_adapter
from fgvu.extract.pipeline import run_extract
from fgvu.extract.video_source import open_video
from fgvu.fusion.config import FitConfig, ModelConfig
from fgvu.fusion.train import fit
from fgvu.inference.config import StreamConfig
from fgvu.inference.predictor import Predictor, VideoFailedError
from fgvu.inference.prediction import read_csv
from fgvu.inference.stream import StreamRunner
from fgvu.synth.videos import write_video_dataset

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("infer")
    data = write_video_dataset(root / "data", layout="aff-wild2", videos=3, frames=100, seed=3)
    run_extract(ExtractConfig(dataset="aff-wild2", root=str(data), out=str(root / "cache"), encoders="tiny",
                              device="cpu", progress=False))
    cfg = FitConfig(epochs=2, batch_size=8, device="cpu", model=ModelConfig(d_model=16, mlp_hidden=16, heads=2))
    fit(root / "cache", cfg, root / "run", progress=False)
    new = root / "new"  # "new" videos: copies under other names, in a folder of their own
    new.mkdir()
    shutil.copy(data / "batch1" / "synth-000.mp4", new / "walk.mp4")
    shutil.copy(data / "batch1" / "synth-002.mp4", new / "short.mp4")  # shorter than one window
    predictor = Predictor.from_run(root / "run", device="cpu")
    predicted = predictor.predict_videos(folder=new)
    return SimpleNamespace(root=root, run=root / "run", cache=root / "cache", new=new, predictor=predictor,
                           predicted={p.name: p for p in predicted.predictions})


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def cache_path_predictions(run, cache):
    """What `fgvu predict RUN --cache CACHE --split test` computes, frame by frame, per video name."""
    from fgvu.fusion.checkpoint import load_checkpoint
    from fgvu.fusion.data import FeatureData, length_options
    from fgvu.fusion.evaluate import frame_level, predict_windows, step_values
    from fgvu.fusion.splits import videos_in_split

    ckpt = load_checkpoint(run)
    view = open_cache(cache, modalities=ckpt.cfg.model.modalities, video_frames=(ckpt.cfg.video_frames,))
    data = FeatureData(view, ckpt.cfg.model.modalities, **length_options(ckpt.cfg))
    windows = data.windows_of(videos_in_split(view, "test"))
    per_video = frame_level(view, windows, step_values("va", predict_windows(ckpt.model, data, windows, ckpt.norm)))
    return {str(view.videos.name[v]): values for v, values in per_video.items()}


def test_raw_video_prediction_equals_extract_then_predict_from_the_cache(trained, tmp_path):
    # the three steps the issue describes, with the run's encoders and prompt named by hand
    prompt = trained.predictor.spec.caption_prompt
    result = invoke("extract", "--dataset", "folder", "--root", trained.new, "--task", "va", "--encoders", "tiny",
                    "--caption-prompt", prompt, "--device", "cpu", "--out", tmp_path / "cache", "--quiet")
    assert result.exit_code == 0, result.output
    info = invoke("cache", "info", tmp_path / "cache")
    assert "labels: none (every target is masked" in info.output and "test 2" in info.output
    expected = cache_path_predictions(trained.run, tmp_path / "cache")
    assert sorted(expected) == sorted(trained.predicted) == ["short", "walk"]
    for name, pred in trained.predicted.items():
        assert pred.n_frames == open_video(trained.new / f"{name}.mp4").info.n_frames
        np.testing.assert_array_equal(pred.values, expected[name])  # frame by frame, bit for bit
    result = invoke("predict", trained.run, "--cache", tmp_path / "cache", "--split", "test", "--out", tmp_path / "s")
    assert result.exit_code == 0, result.output and len(list((tmp_path / "s").iterdir())) == 2


def test_the_api_round_trips_the_run(trained):
    import fgvu
    from fgvu.fusion.run_folder import load_val_frames, read_config

    assert fgvu.Predictor is Predictor
    val = load_val_frames(trained.run)  # what training predicted for its validation videos
    names = read_config(trained.run)["splits"]["val"]
    again = trained.predictor.predict_features(fgvu.load_cache(trained.cache), videos=names)
    for i, pred in enumerate(again):
        assert pred.name == val.video_names[i]
        np.testing.assert_array_equal(pred.values.astype(np.float32), val.y_pred[val.rows_of(i)].astype(np.float32))
    walk = trained.predicted["walk"]
    plan = trained.predictor.spec.sampling
    assert walk.steps.values.shape == (len(plan.window_starts(walk.n_frames)), 16, 2)
    assert walk.table()["time_s"][30] == 30 / walk.fps and walk.column("arousal").shape == (walk.n_frames,)
    with pytest.raises(VideoFailedError, match="not a video"):
        bad = trained.root / "bad.mp4"
        bad.write_text("not a video at all\n" * 10)
        trained.predictor.predict(bad)


def test_a_run_whose_cache_moved_names_it_and_takes_a_cache_spec(trained, tmp_path):
    import json

    from fgvu.inference.predictor import PredictorError

    run = tmp_path / "run"
    shutil.copytree(trained.run, run)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "cache": str(tmp_path / "gone")}))
    with pytest.raises(PredictorError, match=r"gone: no such directory; run .* --cache-spec"):
        Predictor.from_run(run, device="cpu")
    moved = Predictor.from_run(run, device="cpu", cache_spec=trained.cache / "cache.json")
    assert moved.spec == trained.predictor.spec


def test_an_encoder_set_of_ones_own_must_match_the_run(trained):
    from fgvu.extract.encoders.base import EncoderError

    mine = trained.predictor.encoders()
    assert Predictor.from_run(trained.run, device="cpu", encoders=mine).encoders() is mine
    other = SimpleNamespace(fingerprints=lambda: {**mine.fingerprints(), "image": {"name": "clip", "variant": "x"}})
    with pytest.raises(EncoderError, match="differ from the ones the run was trained with"):
        Predictor.from_run(trained.run, device="cpu", encoders=other)


def test_import_fgvu_stays_cheap():
    code = "import sys, fgvu; print(sorted(m for m in ('torch', 'zarr', 'av', 'jax') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cli_predict_on_raw_videos_writes_csv_png_overlay_and_goes_on_after_a_bad_one(trained, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100)
    video = trained.new / "walk.mp4"
    result = invoke("predict", trained.run, video, bad, "--out", tmp_path / "out", "--overlay", tmp_path / "ov",
                    "--device", "cpu", "--quiet")
    assert result.exit_code == 0, result.output
    assert "broken: failed:" in result.output and "moov" in result.output
    assert "walk: " in result.output and "valence mean" in result.output and "1 videos predicted, 1 failed" in result.output
    frames, values = read_csv(tmp_path / "out" / "walk.csv", "va")
    source = open_video(video).info
    assert frames.tolist() == list(range(source.n_frames))  # exactly one row per frame
    np.testing.assert_allclose(values, trained.predicted["walk"].values, atol=5e-7)
    assert (tmp_path / "out" / "walk.timeline.png").read_bytes()[:4] == b"\x89PNG"
    overlay = open_video(tmp_path / "ov" / "walk.mp4").info
    assert (overlay.n_frames, overlay.width, overlay.height) == (source.n_frames, source.width, source.height)
    result = invoke("predict", trained.run, "--overlay", tmp_path / "o.mp4")  # video options need videos
    assert "--overlay: only for raw videos" in str(result.exception)


def test_unlabelled_folder_needs_its_task(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"x")
    with pytest.raises(DatasetError, match="pass --task va|violence"), pytest.warns(UserWarning, match="no labels"):
        build_adapter("folder", tmp_path).items()
    items = build_adapter("folder", tmp_path, task="violence").items()
    assert [(i.name, i.split, i.annotation) for i in items] == [("a", "test", None)]


def stream(trained, tmp_path, **options):
    options = {"source": str(trained.new / "walk.mp4"), "device": "cpu", "progress": False, **options}
    return StreamRunner(trained.predictor, StreamConfig(**options)).run(tmp_path / "stream")


def test_streaming_with_full_lookahead_equals_predict(trained, tmp_path):
    result = stream(trained, tmp_path)
    expected = trained.predicted["walk"]
    # The encoders' features are the same bits; the fusion head runs one window at a time instead of all of
    # them in one batch, which moves float32 results by a few ulps (6e-8 measured). A wrong caption, prompt
    # or window moves them by 1e-2.
    np.testing.assert_allclose(result.prediction.values, expected.values, rtol=0, atol=1e-5)
    csv = tmp_path / "stream" / "walk.csv"
    assert csv.read_text().splitlines()[0] == "frame,time_s,valence,arousal"
    assert read_csv(csv, "va")[0].tolist() == list(range(expected.n_frames))
    assert result.policy.kind == "inline" and result.end_reason == "end of stream" and result.dropped == 0
    assert all(w.staleness == 0 for w in result.windows)  # every window read its own captions
    assert {"decode", "video", "image", "captioner", "text", "fusion", "end_to_end"} <= set(result.latency)
    assert any("real-time factor" in line for line in result.lines())
    assert (tmp_path / "stream" / "latency.json").exists() and (tmp_path / "stream" / "windows.csv").exists()


def test_causal_streaming_emits_on_arrival_from_past_frames_only(trained, tmp_path):
    whole = stream(trained, tmp_path / "a", lookahead=0, captions="none")
    cut = 83
    part = stream(trained, tmp_path / "b", lookahead=0, captions="none", max_frames=cut)
    assert part.end_reason == f"stopped after --max-frames {cut}" and part.prediction.n_frames == cut
    reach = 60  # the first window reads frames 0..60
    frame = np.arange(whole.prediction.n_frames)
    delay = whole.emitted_at - frame
    assert (delay[reach:] == 0).all() and (whole.emitted_at[:reach] == reach).all()
    assert delay.max() <= reach and (delay[reach:] <= trained.predictor.spec.sampling.stride).all()
    # what a frame got on arrival did not depend on any later frame
    np.testing.assert_array_equal(part.prediction.values[: cut - 1], whole.prediction.values[: cut - 1])


def test_realtime_drops_frames_when_processing_falls_behind(trained, tmp_path, monkeypatch):
    import fgvu.inference.stream as stream_module

    encode = StreamRunner._encode

    def slow_encode(self, *args):
        time.sleep(1.0)  # 30 frames arrive meanwhile
        return encode(self, *args)

    class SmallQueue(stream_module.FrameReader):  # 8 frames of queue instead of a window's 64
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "capacity": 8})

    monkeypatch.setattr(StreamRunner, "_encode", slow_encode)
    monkeypatch.setattr(stream_module, "FrameReader", SmallQueue)
    result = stream(trained, tmp_path, realtime=True, captions="none")
    n = open_video(trained.new / "walk.mp4").info.n_frames
    assert result.dropped > 0 and result.skipped > 0
    assert result.prediction.n_frames == n and np.isfinite(result.prediction.values).all()
    assert f"frames dropped: {result.dropped}" in result.lines()[1]
    assert len((tmp_path / "stream" / "walk.csv").read_text().splitlines()) == n + 1


def test_a_stalled_stream_ends_cleanly_with_what_arrived(trained, tmp_path, monkeypatch):
    import threading

    import fgvu.inference.stream as stream_module

    real_open = stream_module.open_stream
    release = threading.Event()

    def stalling_open(source, **kw):
        container, video, info = real_open(source, **kw)

        class Stalling:
            def decode(self, s):
                for i, frame in enumerate(container.decode(video)):
                    if i == 70:
                        release.wait(30)  # the source stops sending
                        return
                    yield frame

            def close(self):
                container.close()

        return Stalling(), video, info

    monkeypatch.setattr(stream_module, "open_stream", stalling_open)
    try:
        result = stream(trained, tmp_path, captions="none", stall_timeout=1.0)
    finally:
        release.set()
    assert result.end_reason.startswith("stalled: no frame for 1 s")
    assert result.prediction.n_frames == 70 and np.isfinite(result.prediction.values).all()
    assert len((tmp_path / "stream" / "walk.csv").read_text().splitlines()) == 71


def test_stream_of_a_non_video_source_is_a_clear_error(trained, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\n" * 50)
    result = invoke("stream", trained.run, "--source", notes, "--device", "cpu")
    assert "not a video: a text file" in str(result.exception)
