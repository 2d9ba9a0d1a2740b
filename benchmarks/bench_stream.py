"""Open question 3 of the paper: can the method run online, given the captioner's latency?

Measured in one run on synthetic Aff-Wild2-style videos with the tiny encoders:

1. a v,i,t run and a v,i run are trained on the same cache (`fgvu extract`, `fgvu fit`);
2. every validation video is streamed (`fgvu stream`, full lookahead) with each caption policy:
   inline every window, inline every N windows, asynchronous, none; and with the v,i run (no
   captioner at all). The baseline is `fgvu predict` (offline, every caption);
3. per policy: the per-window latency of each component and of the critical path (`compute`),
   p50 / p95 / max, the real-time factor, dropped frames and skipped windows, the captioner calls,
   how stale the captions were, and the frame-level CCC on the validation videos with its ratio
   to the baseline.

The latency budget a policy reaches is its critical path: p95 (most windows) and max (every window).

`--captioner tiny` (the default) measures the real tiny BLIP-2; its random weights write the same
caption for every frame, so the text stream carries nothing and no policy can cost accuracy.
`--captioner colour` names the hue of the disc (which sets valence), after `--caption-delay` ms per
caption (sleeping, so it does not take the CPU from the rest), so what a stale caption costs shows;
with `--realtime` the videos play at their frame rate and frames drop when a policy falls behind.
`--audio` gives the videos soundtracks and adds a v,i,t,a run (asynchronous captions), streamed with
full lookahead (its windows wait for their audio chunks: predict's values), and with `--lookahead 64`
and `0` (provisional audio from what was heard so far; v,i,t at lookahead 0 for comparison).

    python benchmarks/bench_stream.py [--videos 12] [--frames 240] [--every 4] [--epochs 15] [--device cpu]
    python benchmarks/bench_stream.py --captioner colour --caption-delay 1250 --realtime --every 2,4,8
    python benchmarks/bench_stream.py --audio --videos 8 --epochs 8
    python benchmarks/bench_stream.py --smoke     # seconds: checks that it runs
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from fgvu.cache import open_cache  # noqa: E402
from fgvu.extract.config import ExtractConfig  # noqa: E402
from fgvu.extract.encoders.base import Captioner, make_fingerprint  # noqa: E402
from fgvu.extract.encoders.registry import (  # noqa: E402
    build_audio_encoder, build_image_text_encoder, build_video_encoder,
)
from fgvu.extract.encoding import EncoderSet  # noqa: E402
from fgvu.extract.pipeline import run_extract  # noqa: E402
from fgvu.fusion.config import FitConfig  # noqa: E402
from fgvu.fusion.metrics import va_metrics  # noqa: E402
from fgvu.fusion.run_folder import read_config  # noqa: E402
from fgvu.fusion.train import fit  # noqa: E402
from fgvu.inference.config import StreamConfig  # noqa: E402
from fgvu.inference.predictor import Predictor  # noqa: E402
from fgvu.inference.stream import StreamRunner  # noqa: E402
from fgvu.synth.videos import write_video_dataset  # noqa: E402
from timing import add_smoke_flag  # noqa: E402

COMPONENTS = ("decode", "video", "image", "captioner", "text", "audio", "fusion", "compute", "end_to_end")
HUES = ("red", "orange", "yellow", "lime", "green", "mint", "cyan", "azure", "blue", "violet", "magenta", "rose")


class ColourCaptioner(Captioner):
    """Names the hue of the saturated pixels (the synthetic discs), after `delay_s` per caption."""

    input_size = None

    def __init__(self, delay_s: float = 0.0):
        self.delay_s = delay_s
        self.fingerprint = make_fingerprint("captioner", "synthetic-colour", 0, {"hues": list(HUES)}, "rule-based")

    def caption(self, images, prompt):
        from matplotlib.colors import rgb_to_hsv

        time.sleep(self.delay_s * len(images))
        out = []
        for image in images:
            hsv = rgb_to_hsv(np.asarray(image, np.float32) / 255.0)
            disc = (hsv[..., 1] > 0.5) & (hsv[..., 2] > 0.3)
            if disc.sum() < 20:
                out.append("an empty grey scene")
                continue
            angle = 2 * np.pi * hsv[..., 0][disc]
            hue = (np.arctan2(np.sin(angle).mean(), np.cos(angle).mean()) / (2 * np.pi)) % 1.0
            out.append(f"a {HUES[int(round(hue * len(HUES))) % len(HUES)]} disc")
        return out


def tiny_with(captioner, device: str) -> EncoderSet:
    """The tiny video and image encoders with another captioner."""
    return EncoderSet(video=build_video_encoder("videoprism-tiny", device=device),
                      image_text=build_image_text_encoder("clip-tiny", device=device), captioner=captioner)


def pooled(results) -> dict[str, np.ndarray]:
    """component -> every window's seconds, over all streamed videos."""
    out: dict[str, list[float]] = {}
    for r in results:
        for w in r.windows:
            for k, v in w.times.items():
                out.setdefault(k, []).append(v)
            if w.end_to_end_s is not None:
                out.setdefault("end_to_end", []).append(w.end_to_end_s)
    return {k: np.asarray(v) * 1000 for k, v in out.items()}


def stats(ms: np.ndarray) -> str:
    return f"{np.percentile(ms, 50):7.1f} {np.percentile(ms, 95):7.1f} {ms.max():7.1f}" if len(ms) else " " * 23


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=12)
    parser.add_argument("--frames", type=int, default=240)
    parser.add_argument("--every", default="4", help="N of the inline-every-N-windows policy (comma-separated)")
    parser.add_argument("--captioner", choices=("tiny", "colour"), default="tiny")
    parser.add_argument("--caption-delay", type=float, default=1250.0, help="ms per caption of --captioner colour")
    parser.add_argument("--realtime", action="store_true", help="stream at the videos' frame rate, dropping frames")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--work", type=Path, default=None, help="keep the data, cache and runs here")
    parser.add_argument("--audio", action="store_true", help="videos with soundtracks, and a v,i,t,a run")
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:  # two validation videos (synth's every fourth), every policy
        args.videos, args.frames, args.epochs, args.every = 8, 80, 1, "2"
    work = args.work or Path(tempfile.mkdtemp(prefix="fgvu-bench-stream-"))
    try:
        measure(args, work)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


def measure(args: argparse.Namespace, work: Path) -> None:
    """Extract, fit both runs, stream the validation videos with every policy, print the tables."""
    data = work / "data"
    if not (data / "VA_Estimation_Challenge").exists():
        write_video_dataset(data, layout="aff-wild2", videos=args.videos, frames=args.frames, seed=0,
                            audio=args.audio)
    encoders = tiny_with(ColourCaptioner(), args.device) if args.captioner == "colour" else None
    t0 = time.perf_counter()
    run_extract(ExtractConfig(dataset="aff-wild2", root=str(data), out=str(work / "cache"), encoders="tiny",
                              audio_encoder=None if args.audio else "none", device=args.device, progress=False),
                encoders=encoders)
    if encoders is not None and args.audio:
        encoders.audio = build_audio_encoder("audio-tiny", device=args.device)
    if encoders is not None:  # streaming: the same captioner, now as slow as asked
        encoders.captioner.delay_s = args.caption_delay / 1000.0
    print(f"extracted {args.videos} videos in {time.perf_counter() - t0:.0f} s")
    runs = {}
    for letters in (("v", "i", "t"), ("v", "i")) + ((("v", "i", "t", "a"),) if args.audio else ()):
        run = work / f"run-{''.join(letters)}"
        cfg = FitConfig(epochs=args.epochs, device=args.device)
        cfg = replace(cfg, model=replace(cfg.model, modalities=letters))
        result = fit(work / "cache", cfg, run, progress=False, overwrite=True)
        runs[letters] = run
        print(f"fit {','.join(letters)}: best validation mean CCC {result['val']['ccc_mean']:.3f}")

    view = open_cache(work / "cache", modalities=())
    names = read_config(runs[("v", "i", "t")])["splits"]["val"]
    # a source with two annotated people (_left/_right) has one stream but two targets: leave it out
    sources = {n: data / "batch1" / f"{n}.mp4" for n in names if (data / "batch1" / f"{n}.mp4").exists()}
    targets = {}
    for v, name in enumerate(view.videos.name.tolist()):
        if name in sources:
            lo, n = int(view.videos.frame_offset[v]), int(view.videos.n_frames[v])
            targets[name] = (view.targets[lo:lo + n], view.target_mask[lo:lo + n])

    every = [int(n) for n in args.every.split(",")]
    policies = [("offline (fgvu predict)", ("v", "i", "t"), None),
                ("v,i,t  captions every window", ("v", "i", "t"), dict(captions="inline")),
                *((f"v,i,t  every {n} windows", ("v", "i", "t"), dict(captions="inline", caption_windows=n))
                  for n in every),
                ("v,i,t  async captions", ("v", "i", "t"), dict(captions="async")),
                ("v,i,t  no captions", ("v", "i", "t"), dict(captions="none")),
                ("v,i    (no captioner)", ("v", "i"), dict())]
    if args.audio:
        policies += [("v,i,t,a offline (predict)", ("v", "i", "t", "a"), None),
                     ("v,i,t,a async, full lookahead", ("v", "i", "t", "a"), dict(captions="async")),
                     ("v,i,t,a async, lookahead 64", ("v", "i", "t", "a"), dict(captions="async", lookahead=64)),
                     ("v,i,t,a async, lookahead 0", ("v", "i", "t", "a"), dict(captions="async", lookahead=0)),
                     ("v,i,t  async, lookahead 0", ("v", "i", "t"), dict(captions="async", lookahead=0))]
    rows = []
    for k, (label, letters, options) in enumerate(policies):
        predictor = Predictor.from_run(runs[letters], device=args.device, encoders=encoders)
        if options is None:  # offline predictions of the same videos (the first: the baseline)
            offline = {p.name: p for p in predictor.predict_videos(list(sources.values())).predictions}
            y_true = np.concatenate([targets[n][0] for n in sources])
            mask = np.concatenate([targets[n][1] for n in sources])
            ccc = va_metrics(y_true, np.concatenate([offline[n].values for n in sources]), mask)["ccc_mean"]
            if k == 0:
                base_ccc = ccc
            else:
                rows.append((label, {}, ccc, [], 0, float("nan"), 0, 0))
            continue
        results = []
        for name, source in sources.items():
            cfg = StreamConfig(source=str(source), device=args.device, progress=False, thumbnails=0,
                               realtime=args.realtime, **options)
            results.append(StreamRunner(predictor, cfg).run(work / "streams" / f"policy-{k}" / name))
        y_true = np.concatenate([targets[r.info.name][0] for r in results])
        mask = np.concatenate([targets[r.info.name][1] for r in results])
        y_pred = np.concatenate([r.prediction.values for r in results])
        ccc = va_metrics(y_true, y_pred, mask)["ccc_mean"]
        stale = [w.staleness for r in results for w in r.windows if w.staleness is not None]
        captions = sum(r.latency.get("captioner", {}).get("n", 0) + r.latency.get("captioner (async)", {})
                       .get("n", 0) for r in results)
        wall = sum(r.wall_s for r in results)
        duration = sum(r.prediction.duration_s for r in results)
        dropped = sum(r.dropped for r in results)
        skipped = sum(r.skipped for r in results)
        rows.append((label, pooled(results), ccc, stale, captions, wall / duration, dropped, skipped))

    print(f"\n{len(sources)} validation videos streamed ({'realtime' if args.realtime else 'as fast as processed'}),"
          f" captioner {args.captioner}" + (f" ({args.caption_delay:g} ms)" if args.captioner == "colour" else "")
          + f", {platform.processor() or platform.machine()}, {os.cpu_count()} cores, device {args.device}; "
          f"load average {os.getloadavg()[0]:.1f}; milliseconds per window, p50 p95 max\n")
    print(f"{'policy':<30}" + "".join(f"{c:>24}" for c in ("compute (critical path)", "captioner", "end to end")))
    for label, ms, *_ in rows:
        print(f"{label:<30}{stats(ms.get('compute', np.zeros(0))):>24}{stats(ms.get('captioner', np.zeros(0))):>24}"
              f"{stats(ms.get('end_to_end', np.zeros(0))):>24}")
    print(f"\n{'policy':<30}{'captions':>9}{'stale p50/max':>15}{'RTF':>6}{'dropped':>8}{'skipped':>8}"
          f"{'mean CCC':>10}{'ratio':>7}")
    print(f"{'offline (fgvu predict)':<30}{'':>9}{'':>15}{'':>6}{'':>8}{'':>8}{base_ccc:>10.3f}{1:>7.3f}")
    for label, ms, ccc, stale, captions, rtf, dropped, skipped in rows:
        finite = [s for s in stale if not np.isnan(s)]
        staleness = f"{np.median(finite):.0f}/{max(finite):.0f} fr" if finite else ("mean" if stale else "-")
        print(f"{label:<30}{captions:>9}{staleness:>15}{rtf:>6.2f}{dropped:>8}{skipped:>8}{ccc:>10.3f}"
              f"{ccc / base_ccc:>7.3f}")
    for label, ms, *_ in [rows[0]] + [r for r in rows if r[0].startswith("v,i,t,a async") and r[1]]:
        print(f"\ncomponents, {label.strip()} (p50 p95 max ms):")
        for c in COMPONENTS:
            if c in ms:
                print(f"  {c:<12}{stats(ms[c])}")
    if args.work is not None:
        print(f"\nwork folder: {work}")


if __name__ == "__main__":
    main()
