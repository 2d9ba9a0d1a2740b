"""fgvu's frame reader against a bare PyAV decode loop on the same 720p H.264 file.

fgvu reads the frames the default sampling plan needs, converted to RGB at the encoder size
(288x288 by default); the baseline decodes every frame with threading and converts nothing.
Both are timed in the same run, alternately, best of `--repeats`, with CPU seconds next to wall
seconds (benchmarks/timing.py). Target: ratio >= 0.8.

    python benchmarks/bench_decode.py                 # writes a 10 s 720p test video first
    python benchmarks/bench_decode.py --video PATH    # any video file
    python benchmarks/bench_decode.py --smoke         # seconds: checks that it runs
"""

from __future__ import annotations

import argparse
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from fgvu.extract.video_source import open_video
from fgvu.sampling import SamplingPlan
from timing import add_smoke_flag, best_of


def write_test_video(path: Path, seconds: float = 10.0, fps: int = 30, size: tuple[int, int] = (720, 1280)) -> Path:
    """A textured, panning scene with moving blocks, in H.264 (CABAC, B-frames: x264 'veryfast')."""
    height, width = size
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, size=(height // 8 + 8, width // 8 + 40, 3), dtype=np.uint8)
    texture = coarse.repeat(8, axis=0).repeat(8, axis=1)  # blocky texture, panned across the frame
    texture = (texture.astype(np.uint16) + rng.integers(0, 32, size=texture.shape, dtype=np.uint16)).clip(0, 255)
    texture = texture.astype(np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps), options={"preset": "veryfast", "crf": "23"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for t in range(int(seconds * fps)):
            shift = t % 300
            frame = texture[(t // 3) % 64: (t // 3) % 64 + height, shift: shift + width].copy()
            y, x = (37 * t) % (height - 120), (53 * t) % (width - 160)
            frame[y:y + 120, x:x + 160] = (255 - 2 * t % 255, 90, 2 * t % 255)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def bare_decode(path: Path) -> int:
    """Decode every frame, threaded, no conversion: the baseline."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return sum(1 for _ in container.decode(stream))


def fgvu_read(path: Path, size: tuple[int, int], plan: SamplingPlan) -> tuple[int, int]:
    """Open (counting frames), then read the plan's needed frames at `size`: (frames, converted)."""
    source = open_video(path)
    wanted = plan.layout(source.info.n_frames).needed_frames()
    converted = sum(1 for _ in source.frames(wanted, size=size))
    return source.info.n_frames, converted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, help="video to read (default: write a 10 s 720p H.264 file)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the written test video")
    parser.add_argument("--size", type=int, default=288, help="encoder input size (square)")
    parser.add_argument("--stride", type=int, default=16, help="sampling-plan stride")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each reader; the best counts")
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.repeats = 1.0, 1

    with tempfile.TemporaryDirectory() as tmp:
        path = args.video
        if path is None:
            t0 = time.perf_counter()
            path = write_test_video(Path(tmp) / "bench_720p.mp4", seconds=args.seconds)
            print(f"wrote {path.name}: 1280x720 H.264, {args.seconds:g} s in {time.perf_counter() - t0:.1f} s")
        plan = SamplingPlan(stride=args.stride)
        size = (args.size, args.size)
        n_bare = bare_decode(path)  # warm the page cache and the codec libraries
        n_frames, converted = fgvu_read(path, size, plan)
        best = best_of({"bare": lambda: bare_decode(path), "fgvu": lambda: fgvu_read(path, size, plan)}, args.repeats)
        info = open_video(path).info
        print(f"video: {path.name} {info.width}x{info.height}, {n_frames} frames, {info.fps:g} fps")
        print(f"bare PyAV decode loop (threaded, no conversion): {n_bare / best['bare'].wall:8.1f} frames/s "
              f"({best['bare']})")
        print(f"fgvu frame reader ({converted} of {n_frames} frames to RGB {args.size}x{args.size}): "
              f"{n_frames / best['fgvu'].wall:8.1f} frames/s ({best['fgvu']})")
        print(f"ratio fgvu / bare (best of {args.repeats}, interleaved): {best['bare'].wall / best['fgvu'].wall:.2f} "
              f"wall, {best['bare'].cpu / best['fgvu'].cpu:.2f} CPU (target >= 0.8)")


if __name__ == "__main__":
    main()
