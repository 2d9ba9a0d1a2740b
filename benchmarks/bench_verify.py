"""The cost of `fgvu cache verify` with checksums against `--fast`, in seconds per GB of cache.

Writes a cache of paper-sized features (768-d float16: image rows, caption rows and 16-frame
clips of 1000-frame videos, random values, so they hardly compress), then, interleaved and
best of N (the machine may be shared):

1. `verify_cache(fast=False)`: every array read, its crc32c checksums recomputed, NaN scan, index checks;
2. `verify_cache(fast=True)`: everything but reading the feature arrays;
3. `open_cache` of everything (what `fit` does, checksums of what it loads included);
4. the baseline: every committed array read with zarr alone, nothing checked.

Wall and CPU seconds are printed, per GB of cache on disk; the files are in the page cache
after writing, so this is the CPU cost, not the disk's.

    python benchmarks/bench_verify.py [--videos 150] [--frames 1000] [--dim 768] [--repeats 2]
    python benchmarks/bench_verify.py --smoke     # seconds: checks that it runs
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np

from fgvu.cache import CacheSpec, PartWriter, VideoRecord, open_cache
from fgvu.cache.tools import disk_size
from fgvu.cache.verify import verify_cache
from fgvu.sampling import SamplingPlan
from timing import add_smoke_flag, best_of


def write_cache(out: Path, videos: int, n_frames: int, dim: int) -> None:
    plan = SamplingPlan()
    spec = CacheSpec(dataset="aff-wild2", task="va", sampling=plan, encoders={"video": {"name": "bench"}},
                     dims={"video": dim, "image": dim, "text": dim})
    lay = plan.layout(n_frames)
    rng = np.random.default_rng(0)
    with PartWriter(out, spec, 0, parts=1) as writer:
        for i in range(videos):
            writer.append_video(VideoRecord(
                name=f"v{i:04d}", split="train" if i % 5 else "val", n_frames=n_frames, fps=30.0, width=1280,
                height=720, window_start=lay.starts, image_index=lay.image_index, caption_index=lay.caption_index,
                valid=lay.valid, targets=rng.uniform(-1, 1, (n_frames, 2)).astype(np.float32),
                target_mask=np.ones((n_frames, 2), bool),
                image=rng.standard_normal((len(lay.image_frames), dim)).astype(np.float16),
                image_frame=lay.image_frames, caption_frame=lay.caption_frames,
                text=rng.standard_normal((len(lay.caption_frames), dim)).astype(np.float16),
                captions=["a caption"] * len(lay.caption_frames),
                video={16: rng.standard_normal((lay.n_windows, 16, dim)).astype(np.float16)},
            ))
        writer.mark_finished()


def zarr_read_all(cache: Path) -> None:
    """Every array of every part read whole by zarr: the I/O and decoding that any check pays."""
    import warnings

    from fgvu.cache import iter_committed_parts

    for part in iter_committed_parts(cache):
        with warnings.catch_warnings():  # zarr warns about the part's own JSON files
            warnings.simplefilter("ignore")
            members = list(part.group().members(max_depth=None))
        for _, arr in members:
            if hasattr(arr, "shape"):
                np.asarray(arr[:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=150)
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--repeats", type=int, default=2)
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:
        args.videos, args.frames, args.dim, args.repeats = 4, 200, 16, 1
    work = Path(tempfile.mkdtemp(prefix="bench_verify_"))
    try:
        cache = work / "cache"
        write_cache(cache, args.videos, args.frames, args.dim)
        gb = disk_size(cache) / 1e9
        runs = {"verify (checksums)": lambda: verify_cache(cache),
                "verify --fast": lambda: verify_cache(cache, fast=True),
                "open_cache (all arrays)": lambda: open_cache(cache),
                "zarr read alone (baseline)": lambda: zarr_read_all(cache)}
        best = best_of(runs, args.repeats)
        assert verify_cache(cache) == []
        print(f"cache: {args.videos} videos x {args.frames} frames, {args.dim}-d float16, {gb:.3f} GB on disk")
        for name, t in best.items():
            print(f"{name:26s} {t.wall:7.2f} s wall ({t.wall / gb:6.2f} s/GB)  {t.cpu:7.2f} s CPU "
                  f"({t.cpu / gb:6.2f} s/GB)")
        full, fast = best["verify (checksums)"].wall, best["verify --fast"].wall
        base = best["zarr read alone (baseline)"].wall
        print(f"verify with checksums: {full / fast:.1f}x --fast, {full / base:.2f}x a bare zarr read of every array; "
              f"open_cache {best['open_cache (all arrays)'].wall / base:.2f}x the bare read")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
