"""Per-window latency of each stream component, summarised as p50 / p95 / max.

Components: `decode` (decoding and converting the frames since the previous window, in the reader
thread), one entry per encoder (`video`, `image`, `captioner`, `text`; `audio`: the soundtrack
chunks encoded since the previous window and the window's pooling), `fusion` (the fusion head),
`compute` (the critical path of the window: every component that ran in the main thread) and
`end_to_end` (from the arrival of the window's last frame to its predictions, queueing included).
The asynchronous captioner's calls are `captioner (async)`, off the critical path.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict

import numpy as np

COMPONENT_ORDER = ("decode", "video", "image", "captioner", "text", "audio", "fusion", "compute", "end_to_end",
                   "captioner (async)")


class LatencyLog:
    """Seconds per window for each component."""

    def __init__(self):
        self.samples: dict[str, list[float]] = defaultdict(list)

    def add(self, component: str, seconds: float) -> None:
        self.samples[component].append(float(seconds))

    @contextlib.contextmanager
    def time(self, component: str, into: dict | None = None):
        """Time the block as one sample of `component` (and add it to `into[component]`)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self.add(component, elapsed)
            if into is not None:
                into[component] = into.get(component, 0.0) + elapsed

    def summary(self) -> dict[str, dict[str, float]]:
        """component -> {"n", "p50_ms", "p95_ms", "max_ms", "mean_ms"}, in COMPONENT_ORDER first."""
        order = [c for c in COMPONENT_ORDER if c in self.samples] + sorted(set(self.samples) - set(COMPONENT_ORDER))
        out = {}
        for component in order:
            ms = np.asarray(self.samples[component]) * 1000.0
            if len(ms):
                out[component] = {"n": int(len(ms)), "p50_ms": float(np.percentile(ms, 50)),
                                  "p95_ms": float(np.percentile(ms, 95)), "max_ms": float(ms.max()),
                                  "mean_ms": float(ms.mean())}
        return out


def latency_lines(summary: dict[str, dict[str, float]]) -> list[str]:
    """The summary as a small table: component, windows, p50, p95, max (ms)."""
    lines = [f"{'component':<20}{'n':>6}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}"]
    for component, s in summary.items():
        lines.append(f"{component:<20}{s['n']:>6}{s['p50_ms']:>10.1f}{s['p95_ms']:>10.1f}{s['max_ms']:>10.1f}")
    return lines
