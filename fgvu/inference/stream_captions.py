"""The text stream of a live run: when the captioner runs, and which caption each window reads.

Policies:
- `inline`, every N windows: the captioner runs in the window's critical path. With N = 1 every
  caption-grid frame is captioned before its first window runs, as offline; with N > 1 only the
  newest caption frame of every N-th window is;
- `async`: the newest caption frame of each window is handed to a background thread (replacing one
  it has not started), and windows never wait for it;
- `none`: no captions at all; the text stream carries its training mean (zero after normalisation).

Each caption-grid position of a window reads the caption of the nearest captioned frame that is
ready (ties: the earlier one); `staleness` is how many frames away that caption was taken. Before
the first caption is ready, the training mean stands in (staleness NaN).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

POLICIES = ("auto", "inline", "async", "none")


@dataclass(frozen=True)
class CaptionPolicy:
    """What runs the captioner: `kind` in inline|async|none, `every` windows for inline, and why."""

    kind: str
    every: int = 1
    reason: str = ""

    def describe(self) -> str:
        what = {"inline": "every window" if self.every == 1 else f"every {self.every} windows (newest caption frame)",
                "async": "asynchronously (windows use the latest caption ready)",
                "none": "never (text stream at its training mean)"}[self.kind]
        return f"captions {what}" + (f": {self.reason}" if self.reason else "")


def choose_policy(requested: str, every: int, budget_ms: float | None, reads_text: bool,
                  costs_ms: dict[str, float]) -> CaptionPolicy:
    """The policy to stream with. "auto" without a budget captions inline every `every` windows; with a
    budget, inline every window if the measured window cost fits it, else asynchronously if the window
    without the captioner fits, else not at all."""
    if not reads_text:
        return CaptionPolicy("none", 1, "the run reads no text stream")
    if requested != "auto":
        return CaptionPolicy(requested, every, "--captions " + requested)
    if budget_ms is None:
        return CaptionPolicy("inline", every, "no latency budget")
    base = sum(v for k, v in costs_ms.items() if k not in ("captioner", "text"))
    inline = base + costs_ms.get("captioner", 0.0) + costs_ms.get("text", 0.0)
    if inline <= budget_ms:
        return CaptionPolicy("inline", 1, f"a window with its caption takes ~{inline:.0f} ms <= {budget_ms:g} ms")
    if base <= budget_ms:
        return CaptionPolicy("async", 1, f"a window with its caption takes ~{inline:.0f} ms > {budget_ms:g} ms, "
                                         f"without it ~{base:.0f} ms")
    return CaptionPolicy("none", 1, f"even without captions a window takes ~{base:.0f} ms > {budget_ms:g} ms")


class CaptionBook:
    """Captions of caption-grid frames as they become ready, and the text features each window reads."""

    def __init__(self, policy: CaptionPolicy, encoders, prompt: str, fallback: np.ndarray, log):
        self.policy, self.encoders, self.prompt, self.log = policy, encoders, prompt, log
        self.fallback = np.asarray(fallback, np.float16)
        self._ready: dict[int, np.ndarray] = {}  # caption frame -> float16 text feature
        self.texts: dict[int, str] = {}
        self._asked: set[int] = set()
        self._lock = threading.Lock()
        self._worker = AsyncCaptioner(self) if policy.kind == "async" else None
        self.captioned_inline = 0

    def to_caption(self, window: int, positions: np.ndarray) -> list[int]:
        """The caption frames of this window whose pixels the policy captions (or hands over) now."""
        new = [int(c) for c in np.unique(positions) if int(c) not in self._asked]
        kind, every = self.policy.kind, self.policy.every
        if not new or kind == "none" or (kind == "inline" and every > 1 and window % every):
            return []
        return new if kind == "inline" and every == 1 else new[-1:]

    def before_window(self, window: int, positions: np.ndarray, frames: dict[int, np.ndarray], times: dict) -> None:
        """Caption (or hand over) what `to_caption` says; the window's other new frames are never captioned."""
        wanted = self.to_caption(window, positions)
        self._asked.update(int(c) for c in np.unique(positions))
        if not wanted:
            return
        if self.policy.kind == "async":
            self._worker.submit(wanted[-1], frames[wanted[-1]])
        else:
            self._caption_inline(wanted, frames, times)

    def _caption_inline(self, wanted: list[int], frames: dict, times: dict) -> None:
        with self.log.time("captioner", times):
            texts = self.encoders.captioner.caption(np.stack([frames[c] for c in wanted]), self.prompt)
        with self.log.time("text", times):
            features = np.asarray(self.encoders.image_text.encode_texts(list(texts)), np.float32)
        self.captioned_inline += len(wanted)
        for c, text, feature in zip(wanted, texts, features):
            self.store(c, text, feature)

    def store(self, frame: int, text: str, feature: np.ndarray) -> None:
        """A finished caption (from either thread)."""
        with self._lock:
            self._ready[frame] = np.asarray(feature).astype(np.float16)
            self.texts[frame] = text

    def features(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(float16 rows [K, D], staleness in frames [K]) for the window's caption positions."""
        with self._lock:
            keys = np.array(sorted(self._ready), np.int64)
            table = dict(self._ready)
        if not keys.size:
            return np.repeat(self.fallback[None], len(positions), 0), np.full(len(positions), np.nan)
        right = np.clip(np.searchsorted(keys, positions), 0, len(keys) - 1)
        left = np.clip(right - 1, 0, len(keys) - 1)
        pick = np.where(np.abs(positions - keys[left]) <= np.abs(keys[right] - positions), keys[left], keys[right])
        return np.stack([table[int(k)] for k in pick]), np.abs(positions - pick).astype(np.float64)

    def forget_before(self, frame: int) -> None:
        """Drop captions no window can read any more: those before `frame`, but the last of them."""
        with self._lock:
            old = sorted(k for k in self._ready if k < frame)
            for k in old[:-1]:
                del self._ready[k]
                self.texts.pop(k, None)

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()


class AsyncCaptioner:
    """A background thread that captions the newest frame it was handed, then embeds the caption."""

    def __init__(self, book: CaptionBook):
        self.book = book
        self._pending: tuple[int, np.ndarray] | None = None
        self._cond = threading.Condition()
        self._stopping = False
        self.replaced = 0  # frames handed over but replaced by a newer one before the thread got to them
        self.error: str | None = None  # why the thread stopped early, if it did
        self._thread = threading.Thread(target=self._run, name="fgvu-async-captioner", daemon=True)
        self._thread.start()

    def submit(self, frame: int, image: np.ndarray) -> None:
        with self._cond:
            self.replaced += self._pending is not None
            self._pending = (frame, image)
            self._cond.notify()

    def _run(self) -> None:
        book = self.book
        while True:
            with self._cond:
                while self._pending is None and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                frame, image = self._pending
                self._pending = None
            start = time.perf_counter()
            try:
                text = book.encoders.captioner.caption(image[None], book.prompt)[0]
                feature = np.asarray(book.encoders.image_text.encode_texts([text]), np.float32)[0]
            except Exception as e:  # the stream goes on with the captions it has; the summary says why
                self.error = f"{type(e).__name__}: {e}"
                return
            book.log.add("captioner (async)", time.perf_counter() - start)
            book.store(frame, text, feature)

    def close(self, timeout: float = 60.0) -> None:
        """Stop after the caption in progress (waiting up to `timeout` seconds for it)."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout)
