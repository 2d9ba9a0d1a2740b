"""Inference for a run that reads audio (v,i,t,a): raw-video prediction equals the cache path, the
features API, and streaming with the soundtrack read as it arrives equals offline prediction.

One small run is shared by the module: three synthetic videos with soundtracks (one without) through
the tiny encoders, two epochs of a small fusion head on v,i,t,a.
"""

import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from fgvu.cli import app
from fgvu.extract.config import ExtractConfig
from fgvu.extract.pipeline import run_extract
from fgvu.fusion.config import FitConfig, ModelConfig
from fgvu.fusion.train import fit
from fgvu.inference.predictor import Predictor
from fgvu.synth.videos import write_video_dataset
from test_inference_run import cache_path_predictions

runner = CliRunner()
MODALITIES = ("v", "i", "t", "a")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("infer-audio")
    data = write_video_dataset(root / "data", layout="aff-wild2", videos=3, frames=100, seed=3, audio=True)
    run_extract(ExtractConfig(dataset="aff-wild2", root=str(data), out=str(root / "cache"), encoders="tiny",
                              device="cpu", progress=False))
    cfg = FitConfig(epochs=2, batch_size=8, device="cpu",
                    model=ModelConfig(d_model=16, mlp_hidden=16, heads=2, modalities=MODALITIES))
    fit(root / "cache", cfg, root / "run", progress=False)
    new = root / "new"
    new.mkdir()
    for i, name in enumerate(("walk", "talk", "short")):
        shutil.copy(data / "batch1" / f"synth-00{i}.mp4", new / f"{name}.mp4")
    predictor = Predictor.from_run(root / "run", device="cpu")
    predicted = predictor.predict_videos(folder=new)
    assert not predicted.failures
    return SimpleNamespace(root=root, run=root / "run", cache=root / "cache", new=new, predictor=predictor,
                           predicted={p.name: p for p in predicted.predictions})


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_the_run_reads_audio_and_its_encoder_is_rebuilt_from_the_fingerprint(trained):
    assert trained.predictor.modalities == MODALITIES
    encoders = trained.predictor.encoders()
    assert encoders.audio is not None
    assert encoders.fingerprints()["audio"] == trained.predictor.spec.encoders["audio"]


def test_raw_video_prediction_with_audio_equals_extract_then_predict_from_the_cache(trained, tmp_path):
    prompt = trained.predictor.spec.caption_prompt
    result = invoke("extract", "--dataset", "folder", "--root", trained.new, "--task", "va", "--encoders", "tiny",
                    "--caption-prompt", prompt, "--device", "cpu", "--out", tmp_path / "cache", "--quiet")
    assert result.exit_code == 0, result.output
    expected = cache_path_predictions(trained.run, tmp_path / "cache")
    assert sorted(expected) == sorted(trained.predicted) == ["short", "talk", "walk"]
    for name, pred in trained.predicted.items():
        # frame by frame. Not bit for bit as for v,i,t: in the module's process the tiny audio model gave
        # one float16 audio row one ulp apart between two extractions (6e-8 on the predictions); a wrong
        # audio encoder, mask or step alignment moves predictions by 1e-3 and more.
        np.testing.assert_allclose(pred.values, expected[name], rtol=0, atol=1e-6)
    # the audio rows the prediction read are real: some valid, and they move the prediction
    from fgvu.cache import open_cache

    view = open_cache(tmp_path / "cache")
    assert view.audio_mask.any()


def test_predict_features_round_trips_an_audio_run(trained):
    import fgvu
    from fgvu.fusion.run_folder import load_val_frames, read_config

    val = load_val_frames(trained.run)  # what training predicted for its validation videos
    names = read_config(trained.run)["splits"]["val"]
    again = trained.predictor.predict_features(fgvu.load_cache(trained.cache), videos=names)
    assert len(again) == len(names) > 0
    for i, pred in enumerate(again):
        assert pred.name == val.video_names[i]
        np.testing.assert_array_equal(pred.values.astype(np.float32), val.y_pred[val.rows_of(i)].astype(np.float32))


def stream(trained, tmp_path, video="walk", **options):
    from fgvu.inference.config import StreamConfig
    from fgvu.inference.stream import StreamRunner

    options = {"source": str(trained.new / f"{video}.mp4"), "device": "cpu", "progress": False, **options}
    return StreamRunner(trained.predictor, StreamConfig(**options)).run(tmp_path / "stream")


@pytest.mark.parametrize("video", ["walk", "short"])
def test_streaming_with_audio_and_full_lookahead_equals_predict(trained, tmp_path, video):
    result = stream(trained, tmp_path, video)
    expected = trained.predicted[video]
    # as for v,i,t (test_inference_run): the same feature bits, one window at a time through the head
    np.testing.assert_allclose(result.prediction.values, expected.values, rtol=0, atol=1e-5)
    assert {w.audio for w in result.windows} == {"final"}
    assert "audio" in result.latency and result.latency["audio"]["n"] == len(result.windows)
    assert any(line.startswith("audio: ") and "final" in line for line in result.lines())
    header = (tmp_path / "stream" / "windows.csv").read_text().splitlines()[0]
    assert "audio_ms" in header and header.endswith("audio_rows")


def test_causal_streaming_with_audio_emits_on_arrival_with_provisional_audio(trained, tmp_path):
    result = stream(trained, tmp_path, lookahead=0, captions="none")
    frame = np.arange(result.prediction.n_frames)
    reach = 60
    assert (result.emitted_at[reach:] == frame[reach:]).all()  # nothing waits for the soundtrack
    kinds = [w.audio for w in result.windows]
    assert "provisional" in kinds and np.isfinite(result.prediction.values).all()


def test_streaming_encodes_the_soundtrack_as_it_arrives_and_still_equals_predict(trained, tmp_path):
    """With audio chunks shorter than the video (the real encoders' are 20 s; the tiny one's 10 s are longer
    than these clips), the stream encodes chunks while the video plays, one call each, and still gives
    predict's values: offline and stream use one chunk plan and per-chunk normalization."""
    import copy

    encoders = copy.copy(trained.predictor.encoders())
    encoders.audio = copy.copy(encoders.audio)
    encoders.audio.chunk_seconds, encoders.audio.context_seconds = 0.64, 0.32
    short_chunks = Predictor.from_run(trained.run, device="cpu", encoders=encoders)
    offline = short_chunks.predict(trained.new / "walk.mp4")
    assert np.abs(offline.values - trained.predicted["walk"].values).max() > 1e-4  # the chunks matter
    from fgvu.inference.config import StreamConfig
    from fgvu.inference.stream import StreamRunner

    cfg = StreamConfig(source=str(trained.new / "walk.mp4"), device="cpu", progress=False)
    runner_ = StreamRunner(short_chunks, cfg)
    result = runner_.run(tmp_path / "stream")
    np.testing.assert_allclose(result.prediction.values, offline.values, rtol=0, atol=1e-5)
    from fgvu.extract.audio_features import plan_chunks
    from fgvu.extract.audio_source import track_samples

    n_chunks = len(plan_chunks(track_samples(offline.n_frames, offline.fps), encoders.audio))
    assert runner_.audio.chunks_encoded == n_chunks >= 5  # each chunk once
    assert runner_.audio.chunks_before_end >= n_chunks - 2  # most while the video played
    audio_ms = [w.times["audio"] for w in result.windows]
    assert len(audio_ms) == len(result.windows) and max(audio_ms) > 0


def test_cli_predict_and_stream_an_audio_run_on_a_video_without_sound(trained, tmp_path):
    from fgvu.extract.video_source import open_video
    from fgvu.inference.prediction import read_csv

    mute = write_video_dataset(tmp_path / "mute", layout="aff-wild2", videos=1, frames=70, seed=5)
    video = mute / "batch1" / "synth-000.mp4"
    result = invoke("predict", trained.run, video, "--out", tmp_path / "out", "--overlay", tmp_path / "ov.mp4",
                    "--device", "cpu", "--quiet")
    assert result.exit_code == 0, result.output
    assert "no audio stream" in result.output and "1 videos predicted, 0 failed" in result.output
    frames, values = read_csv(tmp_path / "out" / "synth-000.csv", "va")
    source = open_video(video).info
    assert frames.tolist() == list(range(source.n_frames)) and np.isfinite(values).all()
    assert (tmp_path / "out" / "synth-000.timeline.png").read_bytes()[:4] == b"\x89PNG"
    assert open_video(tmp_path / "ov.mp4").info.n_frames == source.n_frames
    result = invoke("stream", trained.run, "--source", video, "--out", tmp_path / "s", "--device", "cpu", "--quiet")
    assert result.exit_code == 0, result.output
    assert "the source has no audio stream: audio masked" in result.output
    streamed = read_csv(tmp_path / "s" / "synth-000.csv", "va")[1]
    np.testing.assert_allclose(streamed, values, rtol=0, atol=1e-5)  # masked audio, as offline masks it
