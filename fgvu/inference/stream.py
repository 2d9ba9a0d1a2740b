"""`fgvu stream`: a run applied online, window by window, as the frames of a stream arrive.

Frames come from `stream_source.FrameReader` (a decoding thread). Each window runs as soon as its
frames are in (`stream_windows.WindowSchedule`): the grid frames no earlier window encoded go
through CLIP, the window's clip through VideoPrism, its caption frames through the caption policy
(`stream_captions`), its soundtrack through the audio encoder (`stream_audio`: the reader decodes
the container's audio in the same pass), and the window through the fusion head, from the same
feature gathering and normalisation as offline (`FeatureData` over a one-window view, built from
the modality registry: grids, clips, masked modalities and their masks). Every feature is rounded to
float16 as the cache stores it. `stream_windows.FrameEmitter` then emits per-frame predictions
by the lookahead rule into the same CSV `fgvu predict` writes. With the default (full) lookahead
and captions every window, the values are those of `fgvu predict` on the same file: a run that
reads audio then waits, before fusing a window, until the audio chunks its steps pool are fixed
(`StreamAudio.final`); with `--lookahead N` it fuses at once, with provisional audio rows.

Before the first frame, every encoder runs once on blank frames of the stream's size (JIT
compilation, caches) and once more to measure what a window costs: the caption policy for a
latency budget is chosen from that measurement.
"""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fgvu.extract.audio_source import RATE
from fgvu.inference.latency import LatencyLog
from fgvu.inference.prediction import CsvRows, VideoPrediction
from fgvu.inference.stream_audio import StreamAudio
from fgvu.inference.stream_captions import CaptionBook, choose_policy
from fgvu.inference.stream_report import StreamResult, WindowRecord, write_stream_outputs
from fgvu.inference.stream_source import End, FrameReader, Sound, StreamInfo, open_stream
from fgvu.inference.stream_windows import FrameEmitter, WindowSchedule, window_positions
from fgvu.modalities import MODALITIES
from fgvu.tasks import get_task

@dataclass
class _Pending:
    """A window whose pictures and captions are encoded, waiting for its audio rows and the fusion head."""

    record: WindowRecord
    start: int
    rows: dict
    valid: np.ndarray
    image: np.ndarray | None  # its image-grid positions (where its audio rows lie)
    n_frames: int | None
    limit: int  # its steps at or past this frame are padding
    arrived: float | None  # when its last frame arrived


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
        """A one-window, in-memory CacheView holding `rows` (modality letter -> float16 rows of the window;
        a masked modality's mask under its `mask_key`)."""
        from fgvu.cache import CacheView, VideoTable

        zero = np.zeros(1, np.int64)
        videos = VideoTable(name=np.array(["stream"]), split=np.array(["test"]), n_frames=zero, fps=np.ones(1),
                            width=zero, height=zero, image_offset=zero, text_offset=zero, window_offset=zero,
                            frame_offset=zero, missing_frames=zero)
        arrays = {}
        for letter in self.modalities:
            m = MODALITIES[letter]
            if m.storage == "clip":
                arrays[m.name] = {self.ckpt.cfg.video_frames: rows[letter][None]}
                continue
            grid = m.on_grid
            arrays[m.name] = rows[letter]
            arrays[grid.index_key] = np.arange(len(rows[letter]), dtype=np.int64)[None]
            arrays[grid.frames_key] = start + self.offsets[grid.name]
            if m.masked:
                arrays[m.mask_key] = rows[m.mask_key]
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
        """float16 rows of the run's picture and text streams for one window (modality letter -> rows), and
        how stale its captions were. Audio rows come later (`_fuse_ready`): they may wait for the soundtrack."""
        enc, rows, staleness = self.encoders, {}, None
        if "i" in self.modalities:
            new = [g for g in np.unique(positions["image"]).tolist() if g not in self.image_rows]
            if new:
                with self.log.time("image", times):
                    out = np.asarray(enc.image_text.encode_images(np.stack([frames[g] for g in new])), np.float32)
                self.image_rows.update(zip(new, out.astype(np.float16)))
            rows["i"] = np.stack([self.image_rows[g] for g in positions["image"].tolist()])
        if "v" in self.modalities:
            with self.log.time("video", times):
                clip = enc.video.encode_clips(np.stack([frames[p] for p in positions["clip"].tolist()])[None])
            rows["v"] = np.asarray(clip, np.float32)[0].astype(np.float16)
        if "t" in self.modalities:
            self.book.before_window(window, positions["caption"], frames, times)
            rows["t"], stale = self.book.features(positions["caption"])
            staleness = float(np.max(stale))
        return rows, staleness

    def _needed(self, positions: dict, window: int) -> set[int]:
        """The frames the window must still have: its clip, image frames not yet encoded, inline captions."""
        need = set(positions["clip"].tolist()) if "v" in self.modalities else set()
        if "i" in self.modalities:
            need |= {g for g in positions["image"].tolist() if g not in self.image_rows}
        if "t" in self.modalities:
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
        limit = n_frames if n_frames is not None else ready_frame + 1
        self.pending.append(_Pending(record, start, rows, start + np.arange(self.plan.window) < limit,
                                     positions.get("image"), n_frames, limit, arrived_at.get(ready_frame)))
        self._fuse_ready()

    def _encode_audio(self) -> None:
        """Encode the soundtrack chunks that are fixed now; their time goes to the next window fused."""
        if self.audio is not None:
            t0 = time.perf_counter()
            if self.audio.encode_ready():
                self.pending_audio += time.perf_counter() - t0

    def _fuse_ready(self, force: bool = False) -> None:
        """Fuse the waiting windows, in order, whose audio rows are ready (all of them with `force`)."""
        while self.pending:
            job = self.pending[0]
            times = job.record.times
            if self.audio is not None:
                audio = self.audio
                final = audio.final(job.image, job.n_frames)
                if not (final or force or self.cfg.lookahead is not None):
                    return  # full lookahead: wait until the audio is as offline
                t0 = time.perf_counter()
                audio_rows, audio_mask = audio.rows(job.image, job.n_frames)
                times["audio"], self.pending_audio = time.perf_counter() - t0 + self.pending_audio, 0.0
                self.log.add("audio", times["audio"])
                job.rows["a"], job.rows[MODALITIES["a"].mask_key] = audio_rows.astype(np.float16), audio_mask
                job.record.audio = "masked" if not audio.has_audio else "final" if final else "provisional"
            with self.log.time("fusion", times):
                values = self._fuse(job.start, job.rows, job.valid)
            times["compute"] = sum(v for k, v in times.items() if k != "decode")
            self.log.add("compute", times["compute"])
            if job.arrived is not None:
                job.record.end_to_end_s = time.perf_counter() - job.arrived
                self.log.add("end_to_end", job.record.end_to_end_s)
            steps = job.start + self.every * np.arange(len(values))
            self.emitter.add_window(job.start, values, steps < job.limit)
            self.pending.pop(0)

    def _settled(self) -> int:
        """The first window start whose values are not in the emitter yet (waiting, or not run)."""
        return self.pending[0].start if self.pending else self.schedule.next_start

    # ---- warm-up ---------------------------------------------------------------------------------

    def _warm_up(self, size: tuple[int, int]) -> dict[str, float]:
        """Run every encoder twice on blank frames; the second run's costs (ms) of a steady-state window."""
        blank = np.zeros((*size, 3), np.uint8)
        enc, dims, window = self.encoders, self.spec.dims, self.plan.window
        steady = {name: max(1, int(np.sum(o >= window - self.plan.stride))) for name, o in self.offsets.items()}
        blank_rows = {}
        for letter in self.modalities:
            m = MODALITIES[letter]
            blank_rows[letter] = np.zeros((len(self.offsets["clip" if m.storage == "clip" else m.grid]),
                                           dims[m.name]), np.float16)
            if m.masked:
                blank_rows[m.mask_key] = np.ones(len(blank_rows[letter]), bool)
        if "a" in self.modalities:  # one chunk of the soundtrack, with its context on both sides
            a = enc.audio
            sound = np.zeros((1, int((a.chunk_seconds + 2 * a.context_seconds) * RATE) + a.receptive_field), np.float32)
        costs: dict[str, float] = {}
        for _ in range(2):
            times: dict[str, float] = {}

            def timed(component, fn):
                start = time.perf_counter()
                result = fn()
                times[component] = (time.perf_counter() - start) * 1000.0
                return result

            if "i" in self.modalities:
                timed("image", lambda: enc.image_text.encode_images(np.stack([blank] * steady["image"])))
            if "v" in self.modalities:
                timed("video", lambda: enc.video.encode_clips(np.stack([blank] * len(self.offsets["clip"]))[None]))
            if "a" in self.modalities:
                timed("audio", lambda: enc.audio.encode_waves(sound))
            if "t" in self.modalities:
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
        self.records, self.image_rows, self.pending_decode, self.pending_audio, self.pending = [], {}, 0.0, 0.0, []
        self.audio = (StreamAudio(self.encoders.audio, info.fps, self.plan.image_every, info.has_audio)
                      if "a" in self.modalities else None)
        out = Path(out) if out is not None else Path(cfg.out) if cfg.out else stream_dir(self.predictor.run, info.name)
        reader = FrameReader(container, stream, info, size, realtime=cfg.realtime, capacity=self.plan.window,
                             max_frames=cfg.max_frames, audio=self.audio is not None)
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
                    if isinstance(item, Sound):
                        self.audio.add_pieces(item.pieces)
                        self.pending_decode += item.decode_s
                        continue
                    arrived = item.index
                    # a file read as fast as it is taken arrives when taken; a paced or live one when queued
                    frames[item.index] = item.image
                    arrived_at[item.index] = item.arrived if reader.drop else time.perf_counter()
                    self.pending_decode += item.decode_s
                    if self.audio is not None:
                        self.audio.frames_arrived(arrived + 1)
                        self._encode_audio()
                        self._fuse_ready()
                    for start in self.schedule.ready(arrived):
                        self._window(start, frames, None, start + self.schedule.reach, arrived_at)
                    emit(self._settled())
                    self._forget(frames, arrived_at)
                    bar.update(1)
            except KeyboardInterrupt:
                n_frames, reason = arrived + 1, "interrupted"
            finally:
                reader.stop()
            if n_frames > 0:
                if self.audio is not None:  # the track's length is known: the rest of its chunks
                    t0 = time.perf_counter()
                    self.audio.finish(n_frames)
                    self.pending_audio += time.perf_counter() - t0
                for start in self.schedule.tail(n_frames):
                    self._window(start, frames, n_frames, n_frames - 1, arrived_at)
                self._fuse_ready(force=True)
                arrived = n_frames - 1
                emit(None, n_frames)
        self.book.close()
        wall_s = time.perf_counter() - started
        table = np.concatenate(values) if values else np.zeros((0, len(self.task.prediction_columns)))
        prediction = VideoPrediction(info.name, self.predictor.task, info.fps, table,
                                     source=Path(info.source) if not info.live else None,
                                     size=(info.width, info.height))
        result = StreamResult(info, prediction, np.asarray(emitted_at, np.int64), self.records, self.log.summary(),
                              policy, reader.dropped, reason, wall_s, warmup_s, cfg.latency_budget,
                              audio_lines=self._audio_lines(reader))
        result.files = write_stream_outputs(result, out, cfg.thumbnails)
        return result

    def _audio_lines(self, reader) -> list[str]:
        if self.audio is None:
            return []
        kinds = [w.audio for w in self.records if w.audio]
        counts = ", ".join(f"{kinds.count(k)} {k}" for k in ("final", "provisional", "masked") if k in kinds)
        line = f"audio: {self.audio.chunks_encoded} chunk(s) encoded; windows' audio rows: {counts or 'none'}"
        if not self.audio.has_audio:
            line += " (the source has no audio stream: audio masked)"
        return [line] + [f"audio warning: {issue}" for issue in reader.audio_issues]

    def _forget(self, frames: dict, arrived_at: dict) -> None:
        """Drop frames and image rows no window still to run reads (those before the next window's start)."""
        if self.audio is not None:
            self.audio.forget_before(self._settled())
        keep_from = self.schedule.next_start
        for table in (frames, arrived_at, self.image_rows):
            for f in [f for f in table if f < keep_from]:
                del table[f]
        self.book.forget_before(keep_from)

    def _progress(self, info: StreamInfo):
        from tqdm import tqdm

        return tqdm(total=info.n_frames, unit="frame", desc=f"stream {info.name}", disable=not self.cfg.progress,
                    dynamic_ncols=True)
