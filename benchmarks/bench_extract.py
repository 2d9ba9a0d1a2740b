"""Throughput of `fgvu extract` on synthetic videos, and what grid deduplication saves.

Prints, all measured in this run on the same files:
1. a bare PyAV decode loop over every video (threaded, nothing converted): frames/s;
2. the pipeline with null encoders (decode + plan + queue + Zarr writer, no model work):
   frames/s and its ratio to (1), i.e. the pipeline's own overhead;
3. the pipeline with the tiny encoders (after a warm-up run that compiles JAX shapes):
   windows/s, frames/s; encoder work per window (image frames, captions, clips) against
   encoding window by window (16 images, 4 captions per window), with the ratio;
4. CLIP + captioner seconds on the same decoded frames and batch sizes: grid-once
   (SourceEncoder) vs window by window;
5. MB/s written: the run's cache bytes over its wall time and the time inside
   `PartWriter.append_video`; then the writer alone with paper-sized (768-d) features, video by
   video (`buffer_bytes=0`, how fgvu wrote before whole-shard buffering) against buffered (the
   default): bytes written to the file system (write() calls, /proc/self/io) against bytes kept
   on disk, and seconds, best of 2, interleaved.

Ratios are timed alternately, best of N, with CPU seconds next to wall seconds
(benchmarks/timing.py). The tiny-encoder run is repeated for each `--threads` count (torch
math threads; fgvu extract's default for the tiny set is 1) and reports the share of its time
spent in Python's garbage collector (the pipeline freezes the encoders' objects out of it).

    python benchmarks/bench_extract.py [--videos 6] [--frames 400] [--size 144x192] [--threads 1,2]
    python benchmarks/bench_extract.py --smoke     # seconds: checks that it runs
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from fgvu.cache import CacheSpec, PartWriter, VideoRecord  # noqa: E402
from fgvu.cache.tools import disk_size  # noqa: E402
from fgvu.extract.config import ExtractConfig  # noqa: E402
from fgvu.extract.encoding import BatchSizes, EncoderSet, SourceEncoder, conversion_size  # noqa: E402
from fgvu.extract.pipeline import build_encoders, run_extract  # noqa: E402
from fgvu.extract.video_source import open_video  # noqa: E402
from fgvu.sampling import SamplingPlan  # noqa: E402
from fgvu.synth.videos import write_video_dataset  # noqa: E402
from null_encoders import NullCaptioner, NullImageText, NullVideo  # noqa: E402
from timing import GcTimer, add_smoke_flag, best_of, timed  # noqa: E402

PROMPT = "Describe the shapes."


def bare_decode(paths: list[Path]) -> tuple[int, float]:
    """Every frame of every file decoded with threads, nothing converted: (frames, seconds)."""
    import av

    n, start = 0, time.perf_counter()
    for path in paths:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for _ in container.decode(stream):
                n += 1
    return n, time.perf_counter() - start


class WriterTimer:
    """Accumulates the time spent in PartWriter.append_video."""

    def __init__(self):
        self.seconds = 0.0
        self._original = PartWriter.append_video

    def __enter__(self):
        original, timer = self._original, self

        def timed(writer, rec):
            start = time.perf_counter()
            original(writer, rec)
            timer.seconds += time.perf_counter() - start

        PartWriter.append_video = timed
        return self

    def __exit__(self, *exc):
        PartWriter.append_video = self._original


def window_by_window_seconds(encoders: EncoderSet, frames: dict[int, np.ndarray], layout, batches: BatchSizes) -> float:
    """Encoder time when every window encodes its own 16 images and 4 captions (same batch sizes).

    Clips are per window in both schemes and are left out of both timings.
    """
    images = layout.image_frames[layout.image_index].ravel().tolist()  # W x 16, with repeats
    captions = layout.caption_frames[layout.caption_index].ravel().tolist()  # W x 4, with repeats
    start = time.perf_counter()
    for lo in range(0, len(images), batches.image):
        encoders.image_text.encode_images(np.stack([frames[f] for f in images[lo:lo + batches.image]]))
    texts = []
    for lo in range(0, len(captions), batches.caption):
        texts += encoders.captioner.caption(np.stack([frames[f] for f in captions[lo:lo + batches.caption]]), PROMPT)
    for lo in range(0, len(texts), batches.text):
        encoders.image_text.encode_texts(texts[lo:lo + batches.text])
    return time.perf_counter() - start


def grid_once_seconds(encoders: EncoderSet, frames: dict[int, np.ndarray], layout, batches: BatchSizes) -> float:
    """The same work, each grid frame once, as SourceEncoder does it (clips left out)."""
    no_clips = EncoderSet(NullVideo(), encoders.image_text, encoders.captioner)
    start = time.perf_counter()
    enc = SourceEncoder(no_clips, layout, PROMPT, batches)
    for f in layout.needed_frames().tolist():
        enc.add(f, frames[f])
    enc.finish()
    return time.perf_counter() - start


def bytes_written() -> int:
    """Bytes this process has passed to write() so far (Linux /proc/self/io)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise RuntimeError("no wchar in /proc/self/io")


def writer_alone(work: Path, videos: int = 20, n_frames: int = 1000, dim: int = 768,
                 buffer_bytes: int | None = None) -> tuple[float, float, float, float]:
    """PartWriter with paper-sized features (768-d, f16):
    (MiB on disk, MiB written, seconds, seconds per video)."""
    plan = SamplingPlan()
    spec = CacheSpec(dataset="aff-wild2", task="va", sampling=plan, encoders={"video": {"name": "bench"}},
                     dims={"video": dim, "image": dim, "text": dim})
    lay = plan.layout(n_frames)
    rng = np.random.default_rng(0)

    def record(i: int) -> VideoRecord:
        return VideoRecord(
            name=f"v{i:04d}", split="train", n_frames=n_frames, fps=30.0, width=1280, height=720,
            window_start=lay.starts, image_index=lay.image_index, caption_index=lay.caption_index, valid=lay.valid,
            targets=rng.uniform(-1, 1, (n_frames, 2)).astype(np.float32), target_mask=np.ones((n_frames, 2), bool),
            image=rng.standard_normal((len(lay.image_frames), dim)).astype(np.float16), image_frame=lay.image_frames,
            text=rng.standard_normal((len(lay.caption_frames), dim)).astype(np.float16),
            caption_frame=lay.caption_frames, captions=["a caption"] * len(lay.caption_frames),
            video={16: rng.standard_normal((lay.n_windows, 16, dim)).astype(np.float16)},
        )

    records = [record(i) for i in range(videos)]
    out = work / f"writer-{buffer_bytes}"
    shutil.rmtree(out, ignore_errors=True)
    options = {} if buffer_bytes is None else {"buffer_bytes": buffer_bytes}
    written, start = bytes_written(), time.perf_counter()
    with PartWriter(out, spec, 0, parts=1, **options) as writer:
        for rec in records:
            writer.append_video(rec)
        writer.mark_finished()
    seconds = time.perf_counter() - start
    written = bytes_written() - written
    return disk_size(out) / 2**20, written / 2**20, seconds, seconds / videos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--frames", type=int, default=400)
    parser.add_argument("--size", default="144x192", help="H x W of the synthetic videos")
    parser.add_argument("--threads", default="1,2", help="torch threads of the tiny-encoder runs, comma-separated")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved timed runs of each variant; best counts")
    parser.add_argument("--video", type=Path, help="also time decode vs the null-encoder pipeline on this file "
                        "(e.g. a 720p H.264 video), frames converted at 288 px as for the paper encoders")
    parser.add_argument("--writer-only", action="store_true", help="only the writer comparison at paper dims")
    parser.add_argument("--writer-videos", type=int, default=20, help="videos of the writer comparison")
    add_smoke_flag(parser)
    args = parser.parse_args()
    writer_videos, writer_dim = args.writer_videos, 768
    if args.smoke:
        args.videos, args.frames, args.size, args.repeats, args.threads = 1, 100, "48x64", 1, "1"
        writer_videos, writer_dim = 2, 32
    height, width = (int(x) for x in args.size.split("x"))
    thread_counts = [int(t) for t in args.threads.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench_extract_"))
    if args.writer_only:
        try:
            writer_comparison(work, writer_videos, writer_dim)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return
    try:
        root = write_video_dataset(work / "data", layout="aff-wild2", videos=args.videos, frames=args.frames,
                                   size=(height, width))
        paths = sorted((root / "batch1").glob("*.mp4"))
        base = dict(dataset="aff-wild2", root=str(root), progress=False, caption_prompt=PROMPT, device="cpu")

        null = EncoderSet(NullVideo(), NullImageText(), NullCaptioner())
        runs = iter(range(10**6))
        best = best_of({"bare": lambda: bare_decode(paths),
                        "null": lambda: run_extract(ExtractConfig(out=str(work / f"null{next(runs)}"), **base),
                                                    encoders=null)}, args.repeats)
        n_bare, _ = bare_decode(paths)
        s_null = run_extract(ExtractConfig(out=str(work / "null-count"), **base), encoders=null)
        frames_null = s_null.frames
        print(f"videos: {len(paths)} files, {n_bare} frames at {height}x{width}; {s_null.succeeded} items")
        print(f"bare PyAV decode loop:            {n_bare / best['bare'].wall:8.1f} frames/s   ({best['bare']})")
        print(f"pipeline, null encoders:          {frames_null / best['null'].wall:8.1f} frames/s   "
              f"({best['null']}) ratio to bare decode {best['bare'].wall / best['null'].wall:.2f}")

        if args.video:
            folder = work / "one"
            folder.mkdir()
            (folder / args.video.name).symlink_to(args.video.resolve())
            (folder / "labels.csv").write_text(f"video,label\n{args.video.stem},0\n")
            paper_sized = EncoderSet(NullVideo(input_size=288), NullImageText(), NullCaptioner())
            n_one, t_one = bare_decode([args.video])
            s_one = run_extract(ExtractConfig(out=str(work / "one_cache"), **{**base, "dataset": "folder",
                                                                             "root": str(folder)}),
                                encoders=paper_sized)
            print(f"{args.video.name}: bare decode {n_one / t_one:.1f} frames/s, pipeline with null encoders "
                  f"{s_one.frames_per_s:.1f} frames/s, ratio {s_one.frames_per_s / (n_one / t_one):.2f}")

        tiny = build_encoders(ExtractConfig(encoders="tiny", **base))
        run_extract(ExtractConfig(out=str(work / "warmup"), limit=2, **base), encoders=tiny)  # JIT warm-up
        gc_timers = {n: GcTimer() for n in thread_counts}

        def tiny_run(n: int):
            with gc_timers[n]:
                return run_extract(ExtractConfig(out=str(work / f"tiny{n}-{next(runs)}"), threads=n, **base),
                                   encoders=tiny)

        by_threads = best_of({n: (lambda n=n: tiny_run(n)) for n in thread_counts}, args.repeats)
        with WriterTimer() as writer:
            s, _ = timed(lambda: run_extract(ExtractConfig(out=str(work / "tiny"), threads=thread_counts[0], **base),
                                             encoders=tiny))
        c, w = s.counts, s.windows
        for n, t in by_threads.items():
            gc_time = gc_timers[n]
            print(f"pipeline, tiny encoders, {n} torch thread(s): {s.frames / t.wall:8.1f} frames/s   "
                  f"{w / t.wall:.2f} windows/s (best: {t}); garbage collector {gc_time.seconds:.2f} s in "
                  f"{gc_time.collections} collections = {gc_time.share:.1%} of the runs' wall time")
        # per window of each decoded source (left/right items share their source's windows)
        sw = sum(SamplingPlan().layout(open_video(p).info.n_frames).n_windows for p in paths)
        print(f"encoder work per source window ({sw} windows), grid-once vs window-by-window: "
              f"image frames {c.image_frames / sw:.2f} vs 16 (ratio {c.image_frames / (16 * sw):.3f}); "
              f"captions {c.captioned_frames / sw:.2f} vs 4 (ratio {c.captioned_frames / (4 * sw):.3f}); "
              f"text embeddings {c.texts / sw:.2f} vs 4; clips {c.clips / sw:.2f} vs 1")

        # encoder seconds on identical decoded frames of one video, same batch sizes
        plan = SamplingPlan()
        source = open_video(paths[0])
        layout = plan.layout(source.info.n_frames)
        side = tiny.input_side()
        size = conversion_size(source.info.height, source.info.width, side)
        frames = dict(source.frames(layout.needed_frames(), size=size))
        batches = BatchSizes()
        grid_once_seconds(tiny, frames, layout, batches)  # warm-up
        encode = best_of({"grid": lambda: grid_once_seconds(tiny, frames, layout, batches),
                          "naive": lambda: window_by_window_seconds(tiny, frames, layout, batches)},
                         args.repeats if args.smoke else args.repeats + 1)
        print(f"CLIP image + captioner + CLIP text time, {layout.n_windows} windows of {paths[0].name}: "
              f"grid-once {encode['grid']}, window-by-window {encode['naive']}, "
              f"speed-up {encode['naive'].wall / encode['grid'].wall:.2f}x")

        size_mib = disk_size(work / "tiny") / 2**20
        print(f"written (tiny dims): {size_mib:.2f} MiB on disk; {size_mib / s.seconds:.3f} MB/s over the run; "
              f"{writer.seconds:.2f} s in append_video ({1000 * writer.seconds / max(1, s.succeeded):.0f} ms per video)")
        writer_comparison(work, writer_videos, writer_dim)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def writer_comparison(work: Path, videos: int, dim: int = 768) -> None:
    """The writer alone (paper dims by default), video by video against buffered: bytes written, bytes kept, time."""
    best = {}
    for _ in range(2):  # interleaved, best of 2: the machine may be shared
        for label, buffer_bytes in (("video by video", 0), ("buffered", None)):
            result = writer_alone(work, videos=videos, dim=dim, buffer_bytes=buffer_bytes)
            if label not in best or result[2] < best[label][2]:
                best[label] = result
    for label, (kept, written, seconds, per_video) in best.items():
        print(f"writer alone ({dim}-d f16, {videos} videos of 1000 frames), {label}: {written:.1f} MiB "
              f"written for {kept:.1f} MiB kept ({written / kept:.2f}x), {seconds:.2f} s = "
              f"{kept / seconds:.1f} MB/s kept, {1000 * per_video:.0f} ms per video")
    (_, w0, t0, _), (_, w1, t1, _) = best["video by video"], best["buffered"]
    print(f"whole-shard buffering: bytes written {w1 / w0:.2f}x of video by video, time {t1 / t0:.2f}x")


if __name__ == "__main__":
    main()
