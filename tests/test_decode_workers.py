"""--decode-workers: decoder processes give the encoders the single decode thread's events and cache;
a decoder that dies fails only its video; closing early leaves no process behind."""

from __future__ import annotations

import multiprocessing
import os
import time

import numpy as np
import pytest

from fakes import fake_encoders, write_affwild2
from helpers import assert_same_cache
from fgvu.extract.config import ExtractConfig
from fgvu.extract.decode_workers import decode_in_processes
from fgvu.extract.pipeline import run_extract
from fgvu.extract.prefetch import End, Frame, Start, prefetch


class NumberedJobs:
    """prepare(n) -> (header n, frames 0..n-1 spelling n); n < 0 raises; n == 13 kills its process."""

    def __call__(self, n: int):
        if n < 0:
            raise ValueError(f"job {n} is bad")
        if n == 13:
            os._exit(3)
        return f"header {n}", ((i, np.full((2, 2, 3), n, np.uint8)) for i in range(n))


def _events(iterator) -> list[tuple]:
    out = []
    for e in iterator:
        if isinstance(e, Start):
            out.append(("start", e.job, e.header))
        elif isinstance(e, Frame):
            out.append(("frame", e.index, int(e.image[0, 0, 0])))
        elif isinstance(e, End):
            out.append(("end", e.job))
        else:
            out.append(("failed", e.job, str(e.error)))
    return out


def test_processes_deliver_the_threads_events_in_order():
    jobs = [5, 0, 3, -1, 7, 2, 4]
    expected = _events(prefetch(jobs, NumberedJobs(), maxsize=2))
    assert ("failed", -1, "job -1 is bad") in expected
    assert _events(decode_in_processes(jobs, NumberedJobs(), maxsize=2, workers=2)) == expected


def test_a_dead_decoder_fails_its_job_and_a_fresh_one_takes_the_rest():
    jobs = [3, 13, 4, 5, 6]  # job 13's process dies; worker 1 also owes jobs 5 and later
    events = _events(decode_in_processes(jobs, NumberedJobs(), maxsize=2, workers=2))
    failed = [e for e in events if e[0] == "failed"]
    assert len(failed) == 1 and failed[0][1] == 13 and "decoder process died (exit code 3)" in failed[0][2]
    assert [e[1] for e in events if e[0] == "end"] == [3, 4, 5, 6]
    assert not multiprocessing.active_children()


def test_closing_early_stops_every_worker():
    events = decode_in_processes([50] * 6, NumberedJobs(), maxsize=2, workers=2)
    for _ in range(5):
        next(events)
    assert len(multiprocessing.active_children()) == 2
    events.close()
    deadline = time.monotonic() + 10
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not multiprocessing.active_children()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("decode-workers")
    videos = {f"v{i}": 60 + 41 * i for i in range(5)} | {"pair": 150}
    root = write_affwild2(tmp / "data", videos, left_right=("pair",))
    (root / "batch1" / "v2.mp4").write_bytes(b"not a video")  # a failure, recorded the same way
    return root


def test_two_decoders_write_the_single_decoders_cache(dataset, tmp_path):
    caches = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        cfg = ExtractConfig(dataset="aff-wild2", root=str(dataset), out=str(out), progress=False,
                            decode_workers=workers, video_frames=(8, 16), image_batch=16)
        caches[workers] = (out, run_extract(cfg, encoders=fake_encoders()))
    one, two = caches[1][1], caches[2][1]
    assert (one.succeeded, one.failed, one.frames) == (two.succeeded, two.failed, two.frames) == (6, 1, one.frames)
    assert one.counts == two.counts and one.frames > 0
    assert_same_cache(caches[2][0], caches[1][0])
