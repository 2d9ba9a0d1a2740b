"""What the benchmarks share: wall and CPU seconds, interleaved best-of-N, and the --smoke flag.

This machine is often shared, so a ratio is only trusted when fgvu and its baseline are timed
alternately in the same run (a busy moment hits both), the best of N counts, and the CPU
seconds are printed next to the wall time: a wall time far above the CPU time means the
process waited for cores.

`time.process_time` counts every thread of this process, not child processes (a DataLoader's
workers): a benchmark with children says so.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Timing:
    """One measurement: wall seconds and this process's CPU seconds (all threads)."""

    wall: float
    cpu: float

    def __str__(self) -> str:
        return f"{self.wall:.3f} s wall, {self.cpu:.3f} CPU-s"


def timed(call: Callable[[], Any]) -> tuple[Any, Timing]:
    """Run `call` once; its result and its Timing."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = call()
    return result, Timing(time.perf_counter() - wall, time.process_time() - cpu)


def best_of(calls: dict[str, Callable[[], Any]], repeats: int) -> dict[str, Timing]:
    """Each call `repeats` times, interleaved (a, b, a, b, ...); the fastest wall time of each."""
    best: dict[str, Timing] = {}
    for _ in range(max(1, repeats)):
        for name, call in calls.items():
            _, t = timed(call)
            if name not in best or t.wall < best[name].wall:
                best[name] = t
    return best


def ratio_line(label: str, ours: Timing, baseline: Timing, work: float = 1.0, unit: str = "") -> str:
    """'label: fgvu X (wall, CPU) vs baseline Y: ratio' with rates when `work` items were done."""
    rate = f" ({work / ours.wall:.1f} vs {work / baseline.wall:.1f} {unit}/s)" if unit else ""
    return (f"{label}: fgvu {ours} vs baseline {baseline}{rate}; speed-up {baseline.wall / ours.wall:.2f}x wall, "
            f"{baseline.cpu / max(ours.cpu, 1e-9):.2f}x CPU")


def add_smoke_flag(parser: argparse.ArgumentParser) -> None:
    """--smoke: a seconds-long run on tiny inputs that exercises every code path (tests/test_benchmarks.py)."""
    parser.add_argument("--smoke", action="store_true",
                        help="seconds-long run on tiny inputs, to check the benchmark works (not a measurement)")


class GcTimer:
    """Seconds spent in Python's cyclic garbage collector while the block runs (gc.callbacks), and the
    block's own wall seconds; reusable, both add up over every use."""

    def __init__(self):
        self.seconds = 0.0
        self.wall = 0.0
        self.collections = 0
        self._start = 0.0
        self._entered = 0.0

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._start
            self.collections += 1

    @property
    def share(self) -> float:
        """The collector's share of the blocks' wall time."""
        return self.seconds / self.wall if self.wall > 0 else 0.0

    def __enter__(self) -> "GcTimer":
        import gc

        gc.callbacks.append(self._callback)
        self._entered = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        import gc

        self.wall += time.perf_counter() - self._entered
        gc.callbacks.remove(self._callback)
