"""Caption policies of a live stream (fgvu.inference.stream_captions), with fake encoders that spell frame numbers."""

import threading
from types import SimpleNamespace

import numpy as np

from fgvu.inference.latency import LatencyLog, latency_lines
from fgvu.inference.stream_captions import CaptionBook, CaptionPolicy, choose_policy

D = 4


def frame(f):
    return np.full((2, 2, 3), f, np.uint8)


class FakeCaptioner:
    """Captions 'frame N'; optionally signals `started` and waits for `release` first (a slow captioner)."""

    def __init__(self, release=None):
        self.calls, self.release, self.started = [], release, threading.Event()

    def caption(self, images, prompt):
        self.started.set()
        if self.release is not None:
            self.release.wait(10)
        numbers = [int(im[0, 0, 0]) for im in images]
        self.calls.append(numbers)
        return [f"frame {n}" for n in numbers]


class FakeText:
    def encode_texts(self, texts):
        return np.array([[float(t.split()[1]), 0, 0, 1] for t in texts], np.float32)


def book(policy, captioner=None):
    encoders = SimpleNamespace(captioner=captioner or FakeCaptioner(), image_text=FakeText())
    return CaptionBook(policy, encoders, "what?", np.full(D, -1.0), LatencyLog())


def run_windows(b, n_windows, stride=16, caption_every=16, window=64):
    """Windows of the default plan; returns per window the caption frame each position read, and staleness."""
    frames = {f: frame(f % 256) for f in range(0, n_windows * stride + window, caption_every)}
    read, stale = [], []
    for w in range(n_windows):
        positions = w * stride + caption_every * np.arange(window // caption_every)
        b.before_window(w, positions, frames, {})
        rows, s = b.features(positions)
        read.append(rows[:, 0].tolist())
        stale.append(s.tolist())
    return read, stale


def test_inline_every_window_captions_each_caption_frame_once_before_it_is_read():
    b = book(CaptionPolicy("inline", 1))
    read, stale = run_windows(b, 5)
    assert read[0] == [0, 16, 32, 48] and read[4] == [64, 80, 96, 112]
    assert all(s == [0, 0, 0, 0] for s in stale)
    assert b.encoders.captioner.calls == [[0, 16, 32, 48], [64], [80], [96], [112]]


def test_inline_every_n_windows_reuses_the_nearest_caption_and_says_how_stale():
    b = book(CaptionPolicy("inline", 2))
    read, stale = run_windows(b, 5)
    assert b.encoders.captioner.calls == [[48], [80], [112]]  # the newest caption frame of windows 0, 2, 4
    assert read[0] == [48, 48, 48, 48] and stale[0] == [48, 32, 16, 0]
    assert read[1] == [48, 48, 48, 48] and stale[1] == [32, 16, 0, 16]  # frame 64 read the caption of 48
    assert read[2] == [48, 48, 48, 80] and stale[2] == [16, 0, 16, 0]  # a tie goes to the earlier caption


def test_no_captions_read_the_training_mean():
    b = book(CaptionPolicy("none"))
    read, stale = run_windows(b, 2)
    assert read == [[-1.0] * 4] * 2 and np.isnan(stale).all()
    assert b.encoders.captioner.calls == []


def test_async_captions_never_block_a_window_and_arrive_later():
    release = threading.Event()
    captioner = FakeCaptioner(release)
    b = book(CaptionPolicy("async"), captioner)
    frames = {f: frame(f) for f in range(0, 160, 16)}
    positions = [w * 16 + 16 * np.arange(4) for w in range(3)]
    b.before_window(0, positions[0], frames, {})
    assert captioner.started.wait(10)  # the thread took frame 48 and is stuck in the captioner
    for w in (1, 2):  # the windows go on meanwhile, with the training mean
        b.before_window(w, positions[w], frames, {})
        rows, stale = b.features(positions[w])
        assert (rows[:, 0] == -1).all() and np.isnan(stale).all()
    assert b._worker.replaced == 1  # frame 80 replaced 64, which the thread never started
    release.set()
    b.close()  # waits for the caption in progress
    assert captioner.calls[0] == [48]
    rows, stale = b.features(np.array([40]))
    assert rows[:, 0].tolist() == [48] and stale.tolist() == [8]


def test_policy_choice_follows_the_budget():
    costs = {"video": 10.0, "image": 20.0, "fusion": 5.0, "captioner": 300.0, "text": 5.0}
    assert choose_policy("auto", 1, None, True, costs).kind == "inline"
    assert choose_policy("auto", 3, None, True, costs) == CaptionPolicy("inline", 3, "no latency budget")
    assert choose_policy("auto", 1, 400, True, costs).kind == "inline"
    chosen = choose_policy("auto", 1, 100, True, costs)
    assert chosen.kind == "async" and "340 ms > 100 ms" in chosen.reason and "35 ms" in chosen.reason
    assert choose_policy("auto", 1, 20, True, costs).kind == "none"
    assert choose_policy("async", 1, None, True, costs).kind == "async"
    assert choose_policy("inline", 1, 1, False, costs).kind == "none"  # a run without text never captions
    assert "every 4 windows" in CaptionPolicy("inline", 4).describe()


def test_latency_summary_has_percentiles_per_component():
    log = LatencyLog()
    for ms in range(1, 101):
        log.add("image", ms / 1000)
    log.add("fusion", 0.002)
    summary = log.summary()
    assert list(summary) == ["image", "fusion"]
    assert summary["image"]["n"] == 100 and summary["image"]["max_ms"] == 100.0
    assert abs(summary["image"]["p50_ms"] - 50.5) < 1e-9 and abs(summary["image"]["p95_ms"] - 95.05) < 1e-9
    assert latency_lines(summary)[1].split()[:2] == ["image", "100"]
