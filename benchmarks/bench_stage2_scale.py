"""Stage 2 at scale: fit epoch time and peak memory on growing 768-d caches, extrapolated to Aff-Wild2.

For each size (--videos, of about --frames frames each) a synthetic cache is written as
`fgvu synth features --dims 768 --video-frames 8,16,32 --caption-every 8` would (the demo's
sampling: a run reads one clip length of three), then `fgvu fit --epochs 1` runs in a child
process. Measured per size, in the same run:

- the epoch's seconds (training + validation, from metrics.jsonl) and the child's wall and
  CPU seconds;
- the child's peak RSS (VmHWM) against the bytes of the arrays the run uses (v,i,t at
  T=16 with its indices and targets) plus the torch baseline: the peak of the same fit on a
  cache of six short videos, less their arrays (imports, model, optimizer, one batch). Target:
  at most 1.3x the array bytes above that baseline;
- on the middle size, `--jobs 2` ablation workers (two configurations with different clip
  lengths): the peak of the summed PSS of the process tree (each shared page counted once),
  against the same two fits run side by side with private copies;
- on the smallest size, one epoch per `--threads` count, interleaved.

Then a least-squares line through the sizes extrapolates epoch time and memory to Aff-Wild2's
2.8 M frames (one line), and `--jobs 2` there: the workers' private memory twice plus the
shared arrays that two concurrent runs map (the largest two clip lengths, image and captions).

    python benchmarks/bench_stage2_scale.py                    # 20, 40, 80 videos of 1500 frames
    python benchmarks/bench_stage2_scale.py --videos 50,200,800
    python benchmarks/bench_stage2_scale.py --smoke            # seconds: checks that it runs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

from fgvu.cache import open_cache
from timing import add_smoke_flag

AFFWILD2_FRAMES = 2_800_000
# every cache needs enough training base videos for the default selection hold-out (--select-on
# holdout): synth's 60/20/20 split of 6 videos trains on 4, holds one of them out to select on
MIN_VIDEOS = 6
BASELINE_FRAMES = 200  # the baseline cache: MIN_VIDEOS videos of this many frames
MACHINE_GIB = 24
DEMO_SAMPLING = ["--video-frames", "8,16,32", "--caption-every", "8"]
GIB = 2**30


def tree_pss(pid: int) -> int:
    """Summed PSS (bytes) of a process and its descendants: shared pages are split among their users."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue  # it ended meanwhile
    return total


def wait_child(args: list[str], sample_pss: bool = False) -> dict:
    """Run `python args...`: its wall and CPU seconds, output and (with `sample_pss`) the peak
    summed PSS of its process tree, sampled every 0.2 s."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak_pss = 0
    if sample_pss:
        while True:
            done, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if done:
                break
            peak_pss = max(peak_pss, tree_pss(proc.pid))
            time.sleep(0.2)
    else:
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    output = proc.stdout.read()
    if proc.returncode != 0:
        raise RuntimeError(f"child {' '.join(args[:3])} failed:\n{output[-3000:]}")
    return {"wall": time.perf_counter() - start, "cpu": usage.ru_utime + usage.ru_stime, "peak_pss": peak_pss,
            "output": output}


# `fgvu fit ...` that prints its own peak RSS at exit. The peak is read from /proc/self/status
# (VmHWM, reset by exec): ru_maxrss would also count the pages of this parent that the child
# shared between fork and exec, and this parent grows with every cache it writes.
MEASURED_FIT = """
import atexit, sys
def peak():
    hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
    print("peak-rss-kib", hwm.split()[1])
atexit.register(peak)
sys.argv = ["fgvu", *sys.argv[1:]]
from fgvu.cli import main
main()
"""


def fit_child(cache: Path, out: Path, threads: int, d_model: int) -> dict:
    """`fgvu fit CACHE --epochs 1` in a child: wall, CPU seconds, peak RSS and the epoch's seconds."""
    result = wait_child(["-c", textwrap.dedent(MEASURED_FIT), "fit", str(cache), "--out", str(out), "--epochs", "1",
                         "--device", "cpu", "--threads", str(threads), "--d-model", str(d_model), "--quiet",
                         "--force"])
    line = next(x for x in result["output"].splitlines() if x.startswith("peak-rss-kib"))
    result["peak_rss"] = int(line.split()[1]) * 1024
    epochs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return {**result, "epoch": epochs[0]["seconds"]}


JOBS2 = """
import sys
from fgvu.ablations.grid import Ablation, Grid
from fgvu.ablations.runner import plan_grid, run_grid
cache, out, d_model = sys.argv[1], sys.argv[2], int(sys.argv[3])
grid = Grid((Ablation("full", "reference"), Ablation("video-32", "sampling", fit={"video_frames": 32})),
            base_fit={"epochs": 1, "device": "cpu"}, base_model={"d_model": d_model})
results = run_grid(plan_grid(cache, grid, seeds=1), out, jobs=2, progress=False, log=print)
assert all(r.status == "done" for r in results), [r.error for r in results]
"""

PRIVATE2 = """
import subprocess, sys
cache, out, d_model = sys.argv[1], sys.argv[2], sys.argv[3]
fits = [subprocess.Popen([sys.executable, "-m", "fgvu.cli", "fit", cache, "--out", f"{out}-{t}", "--epochs", "1",
                          "--device", "cpu", "--d-model", d_model, "--video-frames", str(t), "--quiet", "--force"])
        for t in (16, 32)]
assert all(f.wait() == 0 for f in fits)
"""


def synth_cache(out: Path, videos: int, frames: int, dim: int) -> Path:
    """`fgvu synth features` in a child (this process stays small): the demo's sampling, `dim` everywhere."""
    wait_child(["-m", "fgvu.cli", "synth", "features", str(out), "--videos", str(videos), "--frames", str(frames),
                "--dims", str(dim), *DEMO_SAMPLING])
    return out


def array_bytes(cache: Path) -> dict[str, int]:
    """Bytes of what a v,i,t run at T=16 holds, and of every clip length, image and caption table."""
    view = open_cache(cache, modalities=("v", "i", "t"), video_frames=(8, 16, 32))
    run = [view.window_video, view.window_start, view.valid, view.targets, view.target_mask, view.video[16],
           view.image, view.text, view.image_index, view.caption_index, view.image_frame, view.caption_frame]
    return {"run": sum(a.nbytes for a in run), "image": view.image.nbytes, "text": view.text.nbytes,
            **{f"clips{t}": view.video[t].nbytes for t in (8, 16, 32)}, "frames": int(view.videos.n_frames.sum())}


def line_through(x: list[float], y: list[float]) -> tuple[float, float]:
    """Least-squares slope and intercept (from a single point: the line through the origin)."""
    if len(x) == 1:
        return y[0] / x[0], 0.0
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", default="20,40,80", help="cache sizes in videos, comma-separated")
    parser.add_argument("--frames", type=int, default=1500, help="frames per video (lengths vary +-30%%)")
    parser.add_argument("--dim", type=int, default=768, help="feature width of every modality")
    parser.add_argument("--d-model", type=int, default=128, help="fusion model width (FitConfig's default)")
    parser.add_argument("--threads", default="1,2", help="thread counts compared on the smallest size")
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:
        args.videos, args.frames, args.dim, args.d_model, args.threads = str(MIN_VIDEOS), BASELINE_FRAMES, 16, 16, "1"
    sizes = [int(v) for v in args.videos.split(",")]
    if min(sizes) < MIN_VIDEOS:
        parser.error(f"--videos: every size needs at least {MIN_VIDEOS} videos (the selection hold-out needs "
                     f"two training base videos), got {args.videos}")
    threads = [int(t) for t in args.threads.split(",")]
    env_note = f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start"
    print(f"stage 2 at scale: {args.dim}-d features, demo sampling (clips 8,16,32; captions every 8), "
          f"d_model {args.d_model}; {env_note}")

    with tempfile.TemporaryDirectory(prefix="bench_stage2_") as tmp:
        tmp = Path(tmp)
        # the baseline: the same fit on a cache of a few short videos (its arrays counted out)
        t0 = time.perf_counter()
        tiny = synth_cache(tmp / "baseline", MIN_VIDEOS, BASELINE_FRAMES, args.dim)
        tiny_written = time.perf_counter() - t0
        tiny_fit = fit_child(tiny, tmp / "baseline-run", threads[0], args.d_model)
        base = {**tiny_fit, "peak_rss": tiny_fit["peak_rss"] - array_bytes(tiny)["run"]}
        print(f"torch baseline (a fit of the same model on {MIN_VIDEOS} short videos, less their arrays): peak RSS "
              f"{base['peak_rss'] / GIB:.2f} GiB")
        rows, caches = [], {}
        print(f"{'videos':>7}{'frames':>10}{'arrays GiB':>12}{'epoch s':>9}{'wall s':>8}{'CPU-s':>7}"
              f"{'peak GiB':>10}{'(peak-base)/arrays':>20}{'write s':>9}")
        for n in sizes:
            if (n, args.frames) == (MIN_VIDEOS, BASELINE_FRAMES):  # the baseline's cache (--smoke): fitted above
                cache, written, fit = tiny, tiny_written, tiny_fit
            else:
                t0 = time.perf_counter()
                cache = synth_cache(tmp / f"c{n}", n, args.frames, args.dim)
                written = time.perf_counter() - t0
                fit = fit_child(cache, tmp / f"run{n}", threads[0], args.d_model)
            caches[n] = cache
            size = array_bytes(cache)
            ratio = (fit["peak_rss"] - base["peak_rss"]) / size["run"]
            rows.append((size, fit))
            print(f"{n:>7}{size['frames']:>10}{size['run'] / GIB:>12.3f}{fit['epoch']:>9.1f}{fit['wall']:>8.1f}"
                  f"{fit['cpu']:>7.1f}{fit['peak_rss'] / GIB:>10.2f}{ratio:>20.2f}{written:>9.1f}")

        # threads on the smallest cache, interleaved (the first count's run above is one of them)
        small = sizes[0]
        per_thread = {t: [] for t in threads}
        per_thread[threads[0]].append(rows[0][1])
        for rep in range(1 if len(threads) == 1 else 2):
            for t in threads:
                if len(per_thread[t]) <= rep:
                    per_thread[t].append(fit_child(caches[small], tmp / f"thr{t}-{rep}", t, args.d_model))
        best = {t: min(runs, key=lambda r: r["epoch"]) for t, runs in per_thread.items()}
        print(f"threads on {small} videos (best of {len(per_thread[threads[0]])}, interleaved): " + "; ".join(
            f"{t}: epoch {best[t]['epoch']:.1f} s, child {best[t]['cpu']:.1f} CPU-s" for t in threads)
            + f"; epoch ratio {threads[-1]}/{threads[0]} threads = "
              f"{best[threads[-1]]['epoch'] / best[threads[0]]['epoch']:.2f}")

        # --jobs 2 on the middle cache: one shared copy
        mid = sizes[len(sizes) // 2]
        jobs2 = wait_child(["-c", textwrap.dedent(JOBS2), str(caches[mid]), str(tmp / "jobs2"), str(args.d_model)],
                           sample_pss=True)
        line = (f"--jobs 2 on {mid} videos (full at T=16 and video-32 at once): peak summed PSS "
                f"{jobs2['peak_pss'] / GIB:.2f} GiB with one shared copy (the runner and both workers)")
        if not args.smoke:  # two plain fits: nothing the fit runs above do not already exercise
            private2 = wait_child(["-c", textwrap.dedent(PRIVATE2), str(caches[mid]), str(tmp / "private2"),
                                   str(args.d_model)], sample_pss=True)
            line += f", {private2['peak_pss'] / GIB:.2f} GiB for the same two fits side by side with private copies"
        print(line)

        # extrapolation to Aff-Wild2: lines through the sizes
        frames = [r[0]["frames"] for r in rows]
        epoch_slope, epoch_icpt = line_through(frames, [r[1]["epoch"] for r in rows])
        run_bytes, peaks = [r[0]["run"] for r in rows], [r[1]["peak_rss"] for r in rows]
        if len(rows) > 1:  # peak = fixed + k x arrays: k is what each byte of arrays costs at its peak
            k, fixed = line_through(run_bytes, peaks)
        else:
            k, fixed = (peaks[0] - base["peak_rss"]) / run_bytes[0], base["peak_rss"]
        k = max(1.0, k)  # a run holds its arrays at least once (tiny smoke sizes measure only noise)
        print(f"peak RSS = {fixed / GIB:.2f} GiB + {k:.2f} x the arrays (least squares over the sizes; "
              f"target: at most 1.3 x the arrays above the fixed part)")
        per_frame = {key: float(np.mean([r[0][key] / r[0]["frames"] for r in rows])) for key in
                     ("run", "image", "text", "clips8", "clips16", "clips32")}
        scale = AFFWILD2_FRAMES
        arrays = per_frame["run"] * scale
        fit_peak = fixed + k * arrays
        worker = fixed + (k - 1) * arrays  # a worker's own memory; its arrays are the shared copy
        # two runs at once map at most the two largest clip lengths, the image and the caption table
        shared = (per_frame["image"] + per_frame["text"] + per_frame["clips32"] + per_frame["clips16"]) * scale
        jobs2_peak = shared + 2 * worker + fixed  # the runner process too (it holds less than a fit's fixed part)
        epoch = epoch_slope * scale + epoch_icpt
        verdict = "fits" if jobs2_peak < 0.9 * MACHINE_GIB * 10**9 else "does NOT fit"
        print(f"Aff-Wild2 extrapolation ({scale / 1e6:.1f} M frames, {args.dim}-d, demo sampling, {threads[0]} "
              f"thread): epoch {epoch / 60:.1f} min; fit peak {fit_peak / GIB:.1f} GiB (arrays {arrays / GIB:.1f} "
              f"GiB); --jobs 2 {jobs2_peak / GIB:.1f} GiB = shared {shared / GIB:.1f} GiB (clips 16 and 32, image, "
              f"captions) + 2 workers x {worker / GIB:.1f} GiB + the runner: {verdict} in {MACHINE_GIB} GB")


if __name__ == "__main__":
    main()
