"""Stream sources (fgvu.inference.stream_source): kinds, names, bad sources, pacing, drops, stops."""

import time
from types import SimpleNamespace

import numpy as np
import pytest

from fgvu.extract.video_source import VideoDecodeError
from fgvu.inference.stream_source import (
    End, Frame, FrameReader, StreamError, StreamInfo, open_stream, source_kind, source_name,
)
from fgvu.synth.videos import write_video


class FakeContainer:
    """Decodes `n` numbered frames as fast as asked."""

    def __init__(self, n):
        self.n, self.closed = n, False

    def decode(self, stream):
        import av

        for i in range(self.n):
            yield av.VideoFrame.from_ndarray(np.full((8, 8, 3), i, np.uint8), format="rgb24")

    def close(self):
        self.closed = True


def reader(n, kind="file", fps=30.0, **options):
    info = StreamInfo("src", kind, "src", fps, 8, 8, None)
    return FrameReader(FakeContainer(n), SimpleNamespace(thread_type=None), info, (8, 8), **options)


def drain(r, timeout=10.0):
    items = []
    while True:
        item = r.queue.get(timeout=timeout)
        items.append(item)
        if isinstance(item, End):
            return items


def test_kinds_and_names():
    assert source_kind("/dev/video0") == "device" and source_kind("rtsp://cam:554/live") == "url"
    assert source_kind("http://host/x.m3u8") == "url" and source_kind("videos/a b.mp4") == "file"
    assert source_name("videos/a b.mp4") == "a_b" and source_name("/dev/video2") == "video2"
    assert source_name("rtsp://cam:554/live/main") == "cam_554_live_main"


def test_a_file_is_read_whole_and_in_order():
    r = reader(20).start()
    items = drain(r)
    r.stop()
    assert [i.index for i in items[:-1]] == list(range(20)) and items[-1] == End(20, "end of stream")
    assert int(items[5].image[0, 0, 0]) == 5 and r.dropped == 0 and r.container.closed


def test_a_live_source_drops_frames_when_the_consumer_is_behind():
    r = reader(20, kind="url", capacity=4).start()
    deadline = time.time() + 10
    while r.dropped < 16 and time.time() < deadline:  # nobody takes frames: all but the queued 4 drop
        time.sleep(0.01)
    items = drain(r)
    r.stop()
    assert r.dropped == 16
    assert [i.index for i in items if isinstance(i, Frame)] == [0, 1, 2, 3] and items[-1].n_frames == 20


def test_realtime_paces_a_file_at_its_frame_rate_and_max_frames_stops_it():
    r = reader(100, fps=50.0, realtime=True, max_frames=10).start()
    items = drain(r)
    r.stop()
    frames = [i for i in items if isinstance(i, Frame)]
    assert len(frames) == 10 and items[-1] == End(10, "stopped after --max-frames 10")
    assert frames[-1].arrived - frames[0].arrived >= 9 / 50 - 0.01


def test_stop_ends_a_reader_that_is_still_going():
    r = reader(10_000).start()
    first = r.queue.get(timeout=10)
    r.stop()
    assert first.index == 0 and r.container.closed


def test_non_video_sources_are_clear_errors(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("this is not a video\n" * 20)
    with pytest.raises(VideoDecodeError, match="not a video: a text file"):
        open_stream(str(text))
    with pytest.raises(VideoDecodeError, match="no such file"):
        open_stream(str(tmp_path / "missing.mp4"))
    with pytest.raises(StreamError, match="a folder"):
        open_stream(str(tmp_path))
    with pytest.raises(StreamError, match="cannot be opened as a video"):
        open_stream("http://127.0.0.1:9/nothing.mp4", open_timeout=2, read_timeout=2)


def test_a_file_opens_with_extractions_frame_count_and_rate(tmp_path):
    path = tmp_path / "v.mp4"
    write_video(path, np.zeros((12, 32, 48, 3), np.uint8), fps=24)
    container, stream, info = open_stream(str(path))
    container.close()
    assert (info.kind, info.name, info.n_frames, info.fps, info.width, info.height) == ("file", "v", 12, 24.0, 48, 32)
