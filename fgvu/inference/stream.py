"""`fgvu stream`: a run applied online, window by window, as the frames of a stream arrive.

Frames come from `stream_source.FrameReader` (a decoding thread). Each window runs as soon as its
frames are in (`stream_windows.WindowSchedule`): the grid frames no earlier window encoded go
through CLIP, the window's clip through VideoPrism, its caption frames through the caption policy
(`stream_captions`), and the window through the fusion head, from the same feature gathering
and normalisation as offline (`FeatureData` over a one-window view). Every feature is rounded to
float16 as the cache stores it. `stream_windows.FrameEmitter` then emits per-frame predictions
by the lookahead rule into the same CSV `fgvu predict` writes. With the default (full) lookahead
and captions every window, the values are those of `fgvu predict` on the same file.

Before the first frame, every encoder runs once on blank frames of the stream's size (JIT
compilation, caches) and once more to measure what a window costs: the caption policy for a
latency budget is chosen from that measurement.
"""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fgvu.inference.latency import LatencyLog, latency_lines
from fgvu.inference.prediction import CsvRows, VideoPrediction
from fgvu.inference.stream_captions import CaptionBook, CaptionPolicy, choose_policy
from fgvu.inference.stream_source import End, FrameReader, StreamInfo, open_stream
from fgvu.inference.stream_windows import FrameEmitter, WindowSchedule, window_positions
from fgvu.tasks import get_task

WINDOW_FIELDS = ("window", "start", "ready_frame", "status", "padded", "decode_ms", "video_ms", "image_ms",
                 "captioner_ms", "text_ms", "fusion_ms", "compute_ms", "end_to_end_ms", "caption_staleness_frames")


@dataclass
class WindowRecord:
    """What happened to one window: run or skipped (a frame it reads was dropped), and its timings (s)."""

    window: int
    start: int
    ready_frame: int
    status: str
    padded: bool
    times: dict = field(default_factory=dict)
    end_to_end_s: float | None = None
    staleness: float | None = None  # the farthest caption-grid position from its caption, in frames

    def row(self) -> list:
        ms = [f"{self.times[k] * 1000:.2f}" if k in self.times else "" for k in
              ("decode", "video", "image", "captioner", "text", "fusion", "compute")]
        e2e = f"{self.end_to_end_s * 1000:.2f}" if self.end_to_end_s is not None else ""
        stale = "" if self.staleness is None or np.isnan(self.staleness) else f"{self.staleness:g}"
        return [self.window, self.start, self.ready_frame, self.status, int(self.padded), *ms, e2e, stale]


@dataclass
class StreamResult:
    """A finished stream: its predictions, when each frame was emitted, per-window records and figures."""

    info: StreamInfo
    prediction: VideoPrediction
    emitted_at: np.ndarray  # [n] the newest frame that had arrived when each frame was emitted
    windows: list[WindowRecord]
    latency: dict
    policy: CaptionPolicy
    dropped: int
    end_reason: str
    wall_s: float
    warmup_s: float
    budget_ms: float | None = None
    files: dict = field(default_factory=dict)

    @property
    def real_time_factor(self) -> float:
        """Wall time over the stream's duration: below 1 keeps up with the stream."""
        return self.wall_s / max(self.prediction.duration_s, 1e-9)

    @property
    def skipped(self) -> int:
        return sum(w.status == "skipped" for w in self.windows)

    def lines(self) -> list[str]:
        """The end-of-stream report."""
        info, pred = self.info, self.prediction
        run = len(self.windows) - self.skipped
        stale = [w.staleness for w in self.windows if w.staleness is not None and not np.isnan(w.staleness)]
        out = [f"stream {info.source} ({info.kind}, {info.fps:g} fps, {info.width}x{info.height}): {pred.n_frames} "
               f"frames in {self.wall_s:.1f} s, real-time factor {self.real_time_factor:.2f} "
               "(wall time / stream time; below 1 keeps up)",
               f"ended: {self.end_reason}; windows: {run} run, {self.skipped} skipped; frames dropped: {self.dropped}; "
               f"warm-up {self.warmup_s:.1f} s",
               self.policy.describe()]
        if stale:
            out.append(f"caption staleness (frames from the caption each window read): p50 "
                       f"{np.percentile(stale, 50):g}, max {max(stale):g} ({max(stale) / info.fps:.2f} s)")
        if self.budget_ms is not None:
            over = sum(w.end_to_end_s is not None and w.end_to_end_s * 1000 > self.budget_ms for w in self.windows)
            out.append(f"windows over the {self.budget_ms:g} ms budget (end to end): {over} of {run}")
        out.append("latency per window:")
        out += ["  " + line for line in latency_lines(self.latency)]
        return out


class StreamRunner:
    """Runs a Predictor's run over one stream source (see the module docstring)."""

    def __init__(self, predictor, cfg):
        self.predictor, self.cfg = predictor, cfg
        self.ckpt, self.spec = predictor.checkpoint, predictor.spec
        self.plan = self.spec.sampling
        self.task = get_task(predictor.task)
        self.modalities = predictor.modalities
        self.offsets = window_positions(self.plan, self.modalities, self.ckpt.cfg.video_frames)
        self.encoders = None  # built once the source has opened, so a bad source fails at once
        self.log = LatencyLog()

    # ---- one window --------------------------------------------------------------------------

    def _view(self, start: int, rows: dict, valid: np.ndarray):
        """A one-window, in-memory CacheView holding `rows` (stream name -> float16 rows of the window)."""
        from fgvu.cache import CacheView, VideoTable

        zero = np.zeros(1, np.int64)
        videos = VideoTable(name=np.array(["stream"]), split=np.array(["test"]), n_frames=zero, fps=np.ones(1),
                            width=zero, height=zero, image_offset=zero, text_offset=zero, window_offset=zero,
                            frame_offset=zero, missing_frames=zero)
        arrays = {}
        for grid, key in (("image", "image"), ("caption", "text")):
            if grid in rows:
                arrays[key] = rows[grid]
                arrays[f"{grid}_index"] = np.arange(len(rows[grid]), dtype=np.int64)[None]
                arrays[f"{grid}_frame"] = start + self.offsets[grid]
        if "clip" in rows:
            arrays["video"] = {self.ckpt.cfg.video_frames: rows["clip"][None]}
        k = len(self.task.targets)
        return CacheView(path=Path("<stream>"), spec=self.spec, videos=videos, window_video=zero,
                         window_start=np.array([start]), valid=valid[None], targets=np.zeros((1, k), np.float32),
                         target_mask=np.zeros((1, k), bool), arrays=arrays)

    def _fuse(self, start: int, rows: dict, valid: np.ndarray) -> np.ndarray:
        """The task's step values [S, V] of one window."""
        from fgvu.fusion.evaluate import feature_data, predict_windows, step_values

        data = feature_data(self.ckpt, self._view(start, rows, valid), self.predictor.run, self.predictor.device)
        steps = predict_windows(self.ckpt.model, data, np.zeros(1, np.int64), self.ckpt.norm)
        return step_values(self.predictor.task, steps)[0]

    def _encode(self, positions: dict, frames: dict, times: dict, window: int) -> tuple[dict, float | None]:
        """float16 rows of each stream the run reads for one window, and how stale its captions were."""
        enc, rows, staleness = self.encoders, {}, None
        if "image" in positions:
            new = [g for g in np.unique(positions["image"]).tolist() if g not in self.image_rows]
            if new:
                with self.log.time("image", times):
                    out = np.asarray(enc.image_text.encode_images(np.stack([frames[g] for g in new])), np.float32)
                self.image_rows.update(zip(new, out.astype(np.float16)))
            rows["image"] = np.stack([self.image_rows[g] for g in positions["image"].tolist()])
        if "clip" in positions:
            with self.log.time("video", times):
                clip = enc.video.encode_clips(np.stack([frames[p] for p in positions["clip"].tolist()])[None])
            rows["clip"] = np.asarray(clip, np.float32)[0].astype(np.float16)
        if "caption" in positions:
            self.book.before_window(window, positions["caption"], frames, times)
            rows["caption"], stale = self.book.features(positions["caption"])
            staleness = float(np.max(stale))
        return rows, staleness

    def _needed(self, positions: dict, window: int) -> set[int]:
        """The frames the window must still have: its clip, image frames not yet encoded, inline captions."""
        need = set(positions.get("clip", np.zeros(0, np.int64)).tolist())
        need |= {g for g in positions.get("image", np.zeros(0, np.int64)).tolist() if g not in self.image_rows}
        if "caption" in positions:
            need |= set(self.book.to_caption(window, positions["caption"]))
        return need

    def _window(self, start: int, frames: dict, n_frames: int | None, ready_frame: int, arrived_at: dict) -> None:
        index = len(self.records)
        positions = self.schedule.positions(start, n_frames)
        padded = n_frames is not None and start + self.plan.window > n_frames
        record = WindowRecord(index, start, ready_frame, "run", padded)
        self.records.append(record)
        if any(f not in frames for f in self._needed(positions, index)):
            record.status = "skipped"  # a frame it reads was dropped: neighbouring windows interpolate
            return
        times = record.times
        times["decode"], self.pending_decode = self.pending_decode, 0.0
        self.log.add("decode", times["decode"])
        rows, record.staleness = self._encode(positions, frames, times, index)
        valid = start + np.arange(self.plan.window) < (n_frames if n_frames is not None else ready_frame + 1)
        with self.log.time("fusion", times):
            values = self._fuse(start, rows, valid)
        times["compute"] = sum(v for k, v in times.items() if k != "decode")
        self.log.add("compute", times["compute"])
        if ready_frame in arrived_at:
            record.end_to_end_s = time.perf_counter() - arrived_at[ready_frame]
            self.log.add("end_to_end", record.end_to_end_s)
        steps = start + self.every * np.arange(len(values))
        limit = n_frames if n_frames is not None else ready_frame + 1
        self.emitter.add_window(start, values, steps < limit)

    # ---- warm-up ---------------------------------------------------------------------------------

    def _warm_up(self, size: tuple[int, int]) -> dict[str, float]:
        """Run every encoder twice on blank frames; the second run's costs (ms) of a steady-state window."""
        blank = np.zeros((*size, 3), np.uint8)
        enc, dims, window = self.encoders, self.spec.dims, self.plan.window
        steady = {name: max(1, int(np.sum(o >= window - self.plan.stride))) for name, o in self.offsets.items()}
        width = {"image": dims.get("image"), "clip": dims.get("video"), "caption": dims.get("text")}
        blank_rows = {name: np.zeros((len(o), width[name]), np.float16) for name, o in self.offsets.items()}
        costs: dict[str, float] = {}
        for _ in range(2):
            times: dict[str, float] = {}

            def timed(component, fn):
                start = time.perf_counter()
                result = fn()
                times[component] = (time.perf_counter() - start) * 1000.0
                return result

            if "image" in self.offsets:
                timed("image", lambda: enc.image_text.encode_images(np.stack([blank] * steady["image"])))
            if "clip" in self.offsets:
                timed("video", lambda: enc.video.encode_clips(np.stack([blank] * len(self.offsets["clip"]))[None]))
            if "caption" in self.offsets:
                texts = timed("captioner", lambda: enc.captioner.caption(np.stack([blank] * steady["caption"]),
                                                                       self.spec.caption_prompt))
                timed("text", lambda: enc.image_text.encode_texts(list(texts)))
            values = timed("fusion", lambda: self._fuse(0, blank_rows, np.ones(window, bool)))
            costs = times
        self.every = window // len(values)
        self.n_values = values.shape[1]
        return costs

    # ---- the stream ------------------------------------------------------------------------------

    def run(self, out: str | Path | None = None) -> StreamResult:
        """Stream the configured source to the end (or a stall, --max-frames, Ctrl-C); write the outputs."""
        from fgvu.extract.encoding import conversion_size
        from fgvu.fusion.run_folder import stream_dir

        cfg = self.cfg
        container, stream, info = open_stream(cfg.source, read_timeout=cfg.stall_timeout)
        t0 = time.perf_counter()
        try:
            self.encoders = self.predictor.encoders(cfg.progress)
            size = conversion_size(info.height, info.width, self.encoders.input_side())
            costs = self._warm_up(size)
        except BaseException:
            container.close()
            raise
        warmup_s = time.perf_counter() - t0
        policy = choose_policy(cfg.captions, cfg.caption_windows, cfg.latency_budget, "caption" in self.offsets, costs)
        norm = self.ckpt.norm
        fallback = (norm.mean["t"].cpu().numpy() if norm is not None and "t" in norm.mean
                    else np.zeros(self.spec.dims.get("text", 1), np.float32))
        self.book = CaptionBook(policy, self.encoders, self.spec.caption_prompt, fallback, self.log)
        self.schedule = WindowSchedule(self.plan, self.offsets)
        self.emitter = FrameEmitter(self.every, self.n_values, cfg.lookahead)
        self.records, self.image_rows, self.pending_decode = [], {}, 0.0
        out = Path(out) if out is not None else Path(cfg.out) if cfg.out else stream_dir(self.predictor.run, info.name)
        reader = FrameReader(container, stream, info, size, realtime=cfg.realtime, capacity=self.plan.window,
                             max_frames=cfg.max_frames)
        frames, arrived_at, emitted_at, values = {}, {}, [], []
        arrived, n_frames, reason = -1, 0, "end of stream"
        started = time.perf_counter()
        with CsvRows(out / f"{info.name}.csv", self.predictor.task) as csv_rows, self._progress(info) as bar:

            def emit(next_start, n=None):
                f, v = self.emitter.emit(max(arrived, 0), next_start, n)
                if len(f):
                    rows = self.task.prediction_rows(v)
                    csv_rows.write(f, rows, info.fps)
                    values.append(rows)
                    emitted_at.extend([arrived] * len(f))

            reader.start()
            try:
                while True:
                    try:
                        item = reader.queue.get(timeout=cfg.stall_timeout)
                    except queue.Empty:
                        n_frames, reason = arrived + 1, f"stalled: no frame for {cfg.stall_timeout:g} s"
                        break
                    if isinstance(item, End):
                        n_frames, reason = item.n_frames, item.reason
                        break
                    arrived = item.index
                    # a file read as fast as it is taken arrives when taken; a paced or live one when queued
                    frames[item.index] = item.image
                    arrived_at[item.index] = item.arrived if reader.drop else time.perf_counter()
                    self.pending_decode += item.decode_s
                    for start in self.schedule.ready(arrived):
                        self._window(start, frames, None, start + self.schedule.reach, arrived_at)
                    emit(self.schedule.next_start)
                    self._forget(frames, arrived_at)
                    bar.update(1)
            except KeyboardInterrupt:
                n_frames, reason = arrived + 1, "interrupted"
            finally:
                reader.stop()
            if n_frames > 0:
                for start in self.schedule.tail(n_frames):
                    self._window(start, frames, n_frames, n_frames - 1, arrived_at)
                arrived = n_frames - 1
                emit(None, n_frames)
        self.book.close()
        wall_s = time.perf_counter() - started
        table = np.concatenate(values) if values else np.zeros((0, len(self.task.prediction_columns)))
        prediction = VideoPrediction(info.name, self.predictor.task, info.fps, table,
                                     source=Path(info.source) if not info.live else None,
                                     size=(info.width, info.height))
        result = StreamResult(info, prediction, np.asarray(emitted_at, np.int64), self.records, self.log.summary(),
                              policy, reader.dropped, reason, wall_s, warmup_s, cfg.latency_budget)
        result.files = write_stream_outputs(result, out, cfg.thumbnails)
        return result

    def _forget(self, frames: dict, arrived_at: dict) -> None:
        """Drop frames and image rows no window still to run reads (those before the next window's start)."""
        keep_from = self.schedule.next_start
        for table in (frames, arrived_at, self.image_rows):
            for f in [f for f in table if f < keep_from]:
                del table[f]
        self.book.forget_before(keep_from)

    def _progress(self, info: StreamInfo):
        from tqdm import tqdm

        return tqdm(total=info.n_frames, unit="frame", desc=f"stream {info.name}", disable=not self.cfg.progress,
                    dynamic_ncols=True)


def write_stream_outputs(result: StreamResult, out: Path, thumbnails: int = 6) -> dict[str, Path]:
    """windows.csv, latency.json, the timeline (thumbnails for a file) and, for tasks with events, the event
    list, next to the per-frame CSV the stream wrote as it went."""
    import csv

    from fgvu.atomic_io import write_json
    from fgvu.inference.outputs import output_paths
    from fgvu.inference.events import write_events
    from fgvu.inference.timeline import read_thumbnails, write_timeline

    pred = result.prediction
    paths = output_paths(out, pred.name)
    files = {"csv": paths["csv"], "windows": out / "windows.csv", "latency": out / "latency.json"}
    with open(files["windows"], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(WINDOW_FIELDS)
        writer.writerows(w.row() for w in result.windows)
    write_json(files["latency"], {
        "source": result.info.source, "frames": pred.n_frames, "fps": result.info.fps, "wall_s": result.wall_s,
        "real_time_factor": result.real_time_factor, "warmup_s": result.warmup_s, "dropped_frames": result.dropped,
        "windows_run": len(result.windows) - result.skipped, "windows_skipped": result.skipped,
        "end_reason": result.end_reason, "captions": result.policy.describe(),
        "latency_budget_ms": result.budget_ms, "latency_ms": result.latency})
    thumbs = []
    if thumbnails and pred.source is not None and pred.n_frames:
        thumbs = read_thumbnails(pred.source, pred.n_frames, pred.fps, thumbnails, pred.size)
    if pred.n_frames:
        files["timeline"] = write_timeline(pred, paths["timeline"], thumbs)
    events = write_events(pred, paths["events"])
    if events is not None:
        files["events"] = events
    return files
