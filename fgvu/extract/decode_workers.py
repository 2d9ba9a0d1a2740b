"""Decoder processes feeding the one encoder process (`fgvu extract --decode-workers N`).

Worker k of N decodes sources k, k+N, k+2N, ... of the job list, each into its own bounded
queue of at most `maxsize` frames; the encoder process reads the sources strictly in job order
(source j from queue j mod N). So N sources decode at once on N cores while the encoders see
exactly the events, in exactly the order, that the single decode thread (`prefetch.prefetch`)
gives them: the cache is the same, and memory stays bounded by N queues.

Workers are spawned (no forked torch/JAX state) and stop when the consumer closes the
iterator, or by themselves when the encoder process dies.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue as queue_module
from collections.abc import Iterator

from fgvu.errors import FgvuError
from fgvu.extract.prefetch import End, Failed, Frame, Prepare, Start

_PUT_TIMEOUT = 0.2  # seconds between checks for a stop request or a dead parent
_STOP_GRACE = 5.0  # seconds a stopped worker gets to exit before it is terminated


class DecoderDied(FgvuError):
    """A decoder process ended without a word (a crash inside FFmpeg, the OOM killer)."""


def decode_in_processes(jobs: list, prepare: Prepare, maxsize: int, workers: int) -> Iterator[Start | Frame | End | Failed]:
    """The events of `prefetch.prefetch(jobs, prepare, maxsize)`, decoded by `workers` processes.

    `prepare` must pickle (e.g. `sources.SourcePreparer`). Errors of one job arrive as its
    Failed event, as with the thread; so does the death of its decoder process, whose later
    jobs go to a fresh process. Closing the iterator early stops every worker.
    """
    jobs = list(jobs)
    workers = max(1, min(workers, len(jobs)))
    if not jobs:
        return
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    queues: list = [None] * workers
    procs: list = [None] * workers

    def start(k: int, first: int) -> None:  # worker k decodes jobs first, first + workers, ...
        queues[k] = context.Queue(maxsize=max(1, maxsize))
        procs[k] = context.Process(target=_decode_worker, name=f"fgvu-decode-{k}", daemon=True,
                                   args=(first, workers, jobs, prepare, queues[k], stop, os.getpid()))
        procs[k].start()

    for k in range(workers):
        start(k, k)
    try:
        for j, job in enumerate(jobs):
            k = j % workers
            while True:
                message = _get(queues[k], procs[k])
                if message is None:  # the process died: this job fails, a fresh one takes the rest
                    code = procs[k].exitcode
                    how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                    yield Failed(job, DecoderDied(f"{getattr(job, 'source', job)}: the decoder process died "
                                                  f"({how}) while decoding it"))
                    _close(queues[k])
                    if j + workers < len(jobs):
                        start(k, j + workers)
                    break
                kind, index, payload = message
                if index != j:
                    raise RuntimeError(f"decode worker {k} sent job {index} while job {j} was expected")
                if kind == "start":
                    yield Start(job, payload)
                elif kind == "frame":
                    yield Frame(int(payload[0]), payload[1])
                elif kind == "end":
                    yield End(job)
                    break
                else:
                    yield Failed(job, payload)
                    break
    finally:
        stop.set()
        for q in queues:  # unblock workers waiting to put, so they see the stop
            _drain(q)
        for proc in procs:
            proc.join(_STOP_GRACE)
            if proc.is_alive():
                proc.terminate()
                proc.join()
        for q in queues:
            _close(q)


def _get(q, proc):
    """The next message of a worker, or None when it died without sending one."""
    while True:
        try:
            return q.get(timeout=_PUT_TIMEOUT)
        except queue_module.Empty:
            if not proc.is_alive():
                try:  # it may have sent its last messages just before exiting
                    return q.get(timeout=_PUT_TIMEOUT)
                except queue_module.Empty:
                    return None


def _close(q) -> None:
    q.close()
    q.cancel_join_thread()


def _drain(q) -> None:
    try:
        while True:
            q.get_nowait()
    except (queue_module.Empty, OSError, ValueError):
        pass


def _decode_worker(first: int, workers: int, jobs: list, prepare: Prepare, q, stop, parent: int) -> None:
    """Decode jobs first, first + workers, ... in order; every message is (kind, job index, payload)."""

    def put(message) -> bool:
        while not stop.is_set() and os.getppid() == parent:
            try:
                q.put(message, timeout=_PUT_TIMEOUT)
                return True
            except queue_module.Full:
                continue
        return False

    for j in range(first, len(jobs), workers):
        frames = None
        try:
            header, frames = prepare(jobs[j])
            pickle.dumps(header)  # a header the queue cannot carry fails its job here, not silently there
            if not put(("start", j, header)):
                return
            for index, image in frames or ():
                if not put(("frame", j, (int(index), image))):
                    return
        except Exception as error:  # delivered to the consumer, which decides
            if not put(("failed", j, _picklable(error))):
                return
            continue
        finally:
            close = getattr(frames, "close", None)
            if close is not None:  # release the decoder of a generator left early
                close()
        if not put(("end", j, None)):
            return


def _picklable(error: Exception) -> Exception:
    """`error` itself when it survives the queue, else a RuntimeError with its type and message."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # noqa: BLE001 - any pickling problem means: send the text instead
        return RuntimeError(f"{type(error).__name__}: {error}")
