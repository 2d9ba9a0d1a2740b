"""What predict writes per video (fgvu.inference.prediction, events, timeline, overlay, outputs)."""

from fractions import Fraction

import numpy as np
import pytest

from fgvu.extract.video_source import open_video
from fgvu.inference.events import EVENT_FIELDS, events, segments, write_events
from fgvu.inference.outputs import output_paths, summary_line, write_outputs
from fgvu.inference.overlay import write_overlay
from fgvu.inference.prediction import CsvRows, PredictionError, VideoPrediction, read_csv
from fgvu.inference.timeline import thumbnail_frames
from fgvu.synth.videos import write_video

N = 40


def violence_prediction(source=None):
    p = np.clip(np.sin(np.arange(N) / 4.0), 0, 1)
    values = np.stack([p, (p >= 0.5).astype(float)], axis=1)
    return VideoPrediction("clip", "violence", 20.0, values, source=source, size=(64, 48))


def va_prediction(source=None):
    t = np.arange(N) / N
    return VideoPrediction("clip", "va", 20.0, np.stack([np.sin(6 * t), -t], axis=1), source=source, size=(64, 48))


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("v") / "clip.mp4"
    rng = np.random.default_rng(0)
    write_video(path, rng.integers(0, 255, (N, 48, 64, 3), dtype=np.uint8), fps=20)
    return path


def test_segments_and_event_times():
    assert segments(np.array([0, 1, 1, 0, 1])) == [(1, 2), (4, 4)]
    assert segments(np.zeros(3)) == [] and segments(np.ones(2)) == [(0, 1)] and segments(np.zeros(0)) == []
    pred = violence_prediction()
    found = events(pred)
    labels = pred.column("label")
    assert [(e.start_frame, e.end_frame) for e in found] == segments(labels)
    first = found[0]
    assert first.start_s == first.start_frame / 20 and first.end_s == (first.end_frame + 1) / 20
    assert first.max_p <= 1 and first.mean_p >= 0.5
    assert events(va_prediction()) is None


def test_event_csv(tmp_path):
    path = write_events(violence_prediction(), tmp_path / "e.csv")
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(EVENT_FIELDS) and len(lines) == 1 + len(events(violence_prediction()))
    assert write_events(va_prediction(), tmp_path / "none.csv") is None and not (tmp_path / "none.csv").exists()


@pytest.mark.parametrize("make", [va_prediction, violence_prediction])
def test_csv_has_one_row_per_frame_and_reads_back(tmp_path, make):
    pred = make()
    path = pred.to_csv(tmp_path / "p.csv")
    lines = path.read_text().splitlines()
    assert len(lines) == N + 1 and lines[0] == ",".join(["frame", "time_s", *pred.columns])
    assert lines[3].split(",")[:2] == ["2", "0.1000"]
    frames, values = read_csv(path, pred.task)
    assert frames.tolist() == list(range(N))
    np.testing.assert_allclose(values, pred.values, atol=5e-7)
    if pred.task == "violence":
        assert {line.split(",")[-1] for line in lines[1:]} <= {"0", "1"}  # the label is an integer
    with pytest.raises(PredictionError, match="expected the header"):
        read_csv(path, "va" if pred.task == "violence" else "violence")


def test_csv_rows_stream_in_pieces(tmp_path):
    pred = va_prediction()
    with CsvRows(tmp_path / "s.csv", "va") as rows:
        rows.write(pred.frame[:10], pred.values[:10], pred.fps)
        assert len((tmp_path / "s.csv").read_text().splitlines()) == 11  # flushed as it goes
        rows.write(pred.frame[10:], pred.values[10:], pred.fps)
    assert (tmp_path / "s.csv").read_text() == pred.to_csv(tmp_path / "whole.csv").read_text()


def test_thumbnails_fit_the_strip_without_overlap():
    frames = thumbnail_frames(300, 30.0, 6, aspect=4 / 3)
    assert len(frames) == 6 and (np.diff(frames) > 0).all() and frames[0] > 0 and frames[-1] < 299
    assert len(thumbnail_frames(300, 30.0, 50, aspect=16 / 9)) < 50  # wide frames: fewer fit
    assert len(thumbnail_frames(3, 30.0, 6, aspect=1.0)) <= 3 and len(thumbnail_frames(100, 30, 0, 1.0)) == 0


@pytest.mark.parametrize("make", [va_prediction, violence_prediction])
def test_outputs_are_written_with_a_png_timeline_and_a_summary(tmp_path, video, make):
    pred = make(source=video)
    written = write_outputs(pred, tmp_path / "out", thumbnails=4)
    assert written["csv"] == output_paths(tmp_path / "out", "clip")["csv"]
    png = written["timeline"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert ("events" in written) == (pred.task == "violence")
    line = summary_line(pred)
    assert line.startswith("clip: 40 frames, 2.0 s")
    if pred.task == "va":
        assert f"valence mean {pred.column('valence').mean():+.2f}" in line
    else:
        assert f"{len(events(pred))} segments with label 1" in line


def test_overlay_keeps_frame_count_size_and_rate_and_draws(tmp_path, video):
    pred = violence_prediction(source=video)
    out = write_overlay(video, pred, tmp_path / "o.mp4")
    src, dst = open_video(video).info, open_video(out).info
    assert (dst.n_frames, dst.width, dst.height, dst.fps) == (src.n_frames, src.width, src.height, src.fps)
    wanted = np.array([0, int(np.argmax(pred.column("label")))])
    original = dict(open_video(video).frames(wanted))
    drawn = dict(open_video(out).frames(wanted))
    for f in wanted.tolist():  # the panel is drawn in the top-left corner
        assert np.abs(drawn[f][:8, :20].astype(int) - original[f][:8, :20].astype(int)).mean() > 10
    violent = int(wanted[1])  # a violent frame gets a red border
    border = drawn[violent][-1, 10:50].astype(int)
    assert border[:, 0].mean() > 150 and border[:, 1].mean() < 100


def test_overlay_of_an_odd_sized_video(tmp_path):
    import av

    path = tmp_path / "odd.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(25, 1))
        stream.width, stream.height, stream.pix_fmt = 63, 47, "yuv444p"
        for i in range(12):
            image = np.full((47, 63, 3), 10 * i, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    pred = VideoPrediction("odd", "va", 25.0, np.zeros((12, 2)))
    info = open_video(write_overlay(path, pred, tmp_path / "odd-overlay.mp4")).info
    assert (info.n_frames, info.width, info.height) == (12, 63, 47)
