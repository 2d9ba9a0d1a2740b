"""Decode-bound extraction throughput: --decode-workers 2 and --engine ray against the local
single-decoder engine, on the same synthetic 720p H.264 videos, measured in the same run.

The encoders return zeros (benchmarks/null_encoders.py) but ask for 288-pixel frames like the
paper's VideoPrism, so every run decodes and converts exactly what a real run would and the
ratios show how well each engine spreads decoding over the cores. The local runs alternate,
best of `--repeats` each (a shared machine's load comes and goes). Ray's start-up (joining or
starting the cluster, the encoder probe) is reported apart from its throughput; the Ray run
uses a cluster of `--cpus` CPUs started here.

    python benchmarks/bench_scaleout.py [--videos 6] [--seconds 10] [--repeats 3] [--cpus 2] [--skip-ray]
    python benchmarks/bench_scaleout.py --smoke   # seconds: checks that it runs (Ray too, where it starts)
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Ray workers must import null_encoders too
os.environ["PYTHONPATH"] = os.pathsep.join([str(BENCH), *filter(None, [os.environ.get("PYTHONPATH")])])

from bench_decode import write_test_video  # noqa: E402
from null_encoders import NullCaptioner, NullImageText, NullVideo, build_null_encoder  # noqa: E402
from timing import add_smoke_flag  # noqa: E402

from fgvu.extract.config import ExtractConfig  # noqa: E402
from fgvu.extract.encoding import EncoderSet  # noqa: E402
from fgvu.extract.pipeline import run_extract  # noqa: E402


def write_dataset(root: Path, videos: int, seconds: float) -> tuple[Path, int]:
    """`videos` 720p files in the Aff-Wild2 layout with per-frame annotations; (root, total frames)."""
    ann = root / "VA_Estimation_Challenge" / "Train_Set"
    ann.mkdir(parents=True, exist_ok=True)
    (root / "batch1").mkdir(parents=True, exist_ok=True)
    first = write_test_video(root / "batch1" / "v000.mp4", seconds=seconds)
    import av

    with av.open(str(first)) as container:
        n = container.streams.video[0].frames or sum(1 for _ in container.decode(video=0))
    for i in range(videos):
        path = root / "batch1" / f"v{i:03d}.mp4"
        if i:
            shutil.copyfile(first, path)  # same content, decoded as separate videos
        (ann / f"v{i:03d}.txt").write_text("valence,arousal\n" + "0.1,0.2\n" * n)
    return root, n * videos


def timed_local(root: Path, out: Path, workers: int) -> float:
    cfg = ExtractConfig(dataset="aff-wild2", root=str(root), out=str(out), progress=False, decode_workers=workers)
    summary = run_extract(cfg, encoders=EncoderSet(NullVideo(288), NullImageText(), NullCaptioner()))
    assert summary.failed == 0, summary.failures
    return summary.seconds


def timed_decoding(root: Path, workers: int) -> float:
    """Decoding alone, no encoders and no cache: the decode thread (1) or `workers` decoder processes."""
    from fgvu.extract.datasets import build_adapter
    from fgvu.extract.decode_workers import decode_in_processes
    from fgvu.extract.parts import group_by_source
    from fgvu.extract.prefetch import prefetch
    from fgvu.extract.sources import SourcePreparer
    from fgvu.sampling import SamplingPlan

    adapter = build_adapter("aff-wild2", root)
    groups = group_by_source(sorted(adapter.items(), key=lambda item: item.name))
    prepare = SourcePreparer(SamplingPlan(), adapter, 288)
    start = time.perf_counter()
    events = prefetch(groups, prepare, 64) if workers == 1 else decode_in_processes(groups, prepare, 64, workers)
    for _ in events:
        pass
    return time.perf_counter() - start


def start_ray(cpus: int, temp_dir: Path) -> float:
    """Start a local cluster of `cpus` CPUs keeping its session files in `temp_dir`; seconds taken."""
    import ray

    start = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, logging_level="WARNING", _temp_dir=str(temp_dir))
    return time.perf_counter() - start


def timed_ray(root: Path, out: Path) -> tuple[float, float]:
    """(probe, extraction seconds) of one Ray run on the cluster this process started."""
    from fgvu.extract.ray_engine import run_ray

    cfg = ExtractConfig(dataset="aff-wild2", root=str(root), out=str(out), progress=False, engine="ray")
    summary = run_ray(cfg, build=build_null_encoder)
    assert summary.failed == 0 and not summary.lost, (summary.failures, summary.lost)
    return summary.startup_seconds, summary.seconds


def ray_part(root: Path, out: Path, cpus: int, base: float, frames: int, smoke: bool) -> None:
    """The --engine ray lines. Ray's session files go to a folder of their own, removed after: short,
    under /tmp, as its socket paths must stay under 107 bytes. A smoke run where Ray cannot
    start says so and skips this part; a measurement fails."""
    temp_dir = Path(tempfile.mkdtemp(prefix="fgvu-ray-", dir="/tmp"))
    try:
        try:
            cluster = start_ray(cpus, temp_dir)
        except (ImportError, OSError, RuntimeError, ConnectionError) as exc:
            if not smoke:
                raise
            print(f"--engine ray: skipped, Ray could not start ({type(exc).__name__}: {exc})")
            return
        import ray

        try:
            probe, seconds = timed_ray(root, out)
        finally:
            ray.shutdown()
        print(f"--engine ray ({cpus} CPUs):          {frames / seconds:7.1f} frames/s ({seconds:.1f} s)  "
              f"ratio {base / seconds:.2f}")
        print(f"  Ray start-up, not in the above: cluster {cluster:.1f} s, encoder probe {probe:.1f} s; "
              f"with it, ratio {base / (seconds + cluster + probe):.2f}")
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each 30 fps video")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="CPUs of the Ray cluster")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each local variant; the best counts")
    parser.add_argument("--skip-ray", action="store_true")
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:  # two videos longer than one 64-frame window
        args.videos, args.seconds, args.repeats, args.cpus = 2, 2.5, 1, 2

    work = Path(tempfile.mkdtemp(prefix="fgvu-scaleout-"))
    try:
        root, frames = write_dataset(work / "data", args.videos, args.seconds)
        print(f"{args.videos} videos, {frames} frames of 720p H.264, {os.cpu_count()} cores")
        times: dict[int, list[float]] = {1: [], 2: []}
        decoding: dict[int, list[float]] = {1: [], 2: []}
        for r in range(args.repeats):
            for workers in (1, 2):
                times[workers].append(timed_local(root, work / f"local-{workers}-{r}", workers))
                decoding[workers].append(timed_decoding(root, workers))
        base, two = min(times[1]), min(times[2])
        alone = min(decoding[1]) / min(decoding[2])
        print(f"decoding alone (no encoders, no cache), 2 decoder processes / the thread: ratio {alone:.2f}")
        print(f"local, 1 decoder (the baseline): {frames / base:7.1f} frames/s ({base:.1f} s)")
        print(f"local, --decode-workers 2:       {frames / two:7.1f} frames/s ({two:.1f} s)  ratio {base / two:.2f}")
        if not args.skip_ray:
            ray_part(root, work / "ray", args.cpus, base, frames, args.smoke)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
