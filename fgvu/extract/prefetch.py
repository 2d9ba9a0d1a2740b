"""Decode ahead of the encoders: a background thread fills a bounded queue with decoded frames.

The thread walks every job (one video source) in order: it prepares the job (probe, plan,
targets), then decodes its frames. The queue holds at most `maxsize` frames, so memory stays
bounded however long the videos are, while decoding (which releases the GIL inside FFmpeg)
overlaps encoding, including across the boundary between two videos.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Start:
    """A job was prepared; its frames follow, then End (or Failed)."""

    job: Any
    header: Any


@dataclass
class Frame:
    """One decoded frame of the current job."""

    index: int
    image: np.ndarray


@dataclass
class End:
    """Every frame of the job was delivered."""

    job: Any


@dataclass
class Failed:
    """Preparing or decoding the job raised `error`; no more frames of it follow."""

    job: Any
    error: BaseException


# prepare(job) -> (header, frames) where frames yields (index, HxWx3 uint8), or is None when
# there is nothing to decode.
Prepare = Callable[[Any], tuple[Any, Iterable[tuple[int, np.ndarray]] | None]]
_DONE = object()


def prefetch(jobs: Iterable[Any], prepare: Prepare, maxsize: int = 64) -> Iterator[Start | Frame | End | Failed]:
    """Events for every job, produced by a background thread at most `maxsize` frames ahead.

    Closing the iterator early (break, exception) stops the thread before it decodes further.
    Exceptions of `prepare` or of decoding arrive as Failed events; the thread itself never dies.
    """
    events: queue.Queue = queue.Queue(maxsize=max(1, maxsize))
    stop = threading.Event()

    def put(event) -> bool:
        while not stop.is_set():
            try:
                events.put(event, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for job in jobs:
                try:
                    header, frames = prepare(job)
                    if not put(Start(job, header)):
                        return
                    try:
                        for index, image in frames or ():
                            if not put(Frame(int(index), image)):
                                return
                    finally:
                        close = getattr(frames, "close", None)
                        if close is not None:  # release the decoder of a generator left early
                            close()
                except Exception as error:  # delivered to the consumer, which decides
                    if not put(Failed(job, error)):
                        return
                    continue
                if not put(End(job)):
                    return
        finally:
            put(_DONE)

    thread = threading.Thread(target=produce, name="fgvu-decode", daemon=True)
    thread.start()
    try:
        while True:
            event = events.get()
            if event is _DONE:
                return
            yield event
    finally:
        stop.set()
        thread.join()
