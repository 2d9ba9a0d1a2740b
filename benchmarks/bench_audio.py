"""Audio decode and encode cost per hour of audio, against baselines measured in the same run.

Prints, on one synthetic soundtrack (48 kHz stereo AAC in an .mp4, `--minutes` long):
1. decoding: `read_audio` (decode, resample to 16 kHz, downmix, place by timestamps, mask) against a
   bare PyAV loop that only decodes the packets: seconds per hour of audio and the ratio;
2. encoding: the track encoded once in overlapping chunks and pooled onto the image grid
   (`audio_rows`), in seconds per hour of audio (and hours of audio per second), against encoding
   every 64-frame window's audio on its own, as a per-window loader would (timed on the first
   `--window-minutes`, scaled): the ratio is what encoding each second once saves at stride 16.

    python benchmarks/bench_audio.py                         # audio-tiny on the CPU
    python benchmarks/bench_audio.py --encoder audio:wavlm-base-plus:/path/to/dir --device cuda --dtype bf16
    python benchmarks/bench_audio.py --smoke                 # seconds: checks that it runs
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import av
import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from fgvu.extract.audio_features import AudioCounts, StepSpans, audio_rows, encode_track  # noqa: E402
from fgvu.extract.audio_source import RATE, AudioTrack, read_audio  # noqa: E402
from fgvu.extract.encoders import build_audio_encoder  # noqa: E402
from fgvu.sampling import SamplingPlan  # noqa: E402
from timing import add_smoke_flag  # noqa: E402

FPS = 30


def write_soundtrack(path: Path, minutes: float, rate: int = 48000) -> Path:
    """Speech-like sound: a gliding tone with syllable-rate loudness and noise, stereo AAC."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate, layout="stereo")
        n, block = int(minutes * 60 * rate), 1024
        for pts in range(0, n - block + 1, block):
            t = (pts + np.arange(block)) / rate
            x = 0.2 * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)) * np.sin(2 * np.pi * (200 + 50 * np.sin(t)) * t)
            x = (x + rng.normal(scale=0.01, size=block)).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(np.stack([x, x]), format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = rate, pts
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def bare_decode(path: Path) -> int:
    """Decode every audio packet, nothing else: the decoding baseline."""
    with av.open(str(path)) as container:
        return sum(frame.samples for frame in container.decode(audio=0))


def best_of(repeats: int, fn):
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def window_by_window(encoder, track: AudioTrack, plan: SamplingPlan, n_frames: int) -> int:
    """Encode each window's own 64 frames of audio separately; returns the samples fed."""
    fed = 0
    per_frame = RATE / FPS
    for start in plan.window_starts(n_frames):
        lo, hi = int(start * per_frame), int(min(start + plan.window, n_frames) * per_frame)
        counts = AudioCounts()
        for _ in encode_track(encoder, track.samples[lo:hi], counts):
            pass
        fed += counts.samples
    return fed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="Length of the test soundtrack.")
    parser.add_argument("--window-minutes", type=float, default=1.0, help="Audio timed window by window.")
    parser.add_argument("--encoder", default="audio-tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--batch", type=int, default=8, help="Chunks per encoder call.")
    parser.add_argument("--repeats", type=int, default=3)
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:  # 12 s of sound, 6 s of it window by window (a few windows)
        args.minutes, args.window_minutes, args.repeats = 0.2, 0.1, 1

    hours = args.minutes / 60
    with tempfile.TemporaryDirectory() as tmp:
        path = write_soundtrack(Path(tmp) / "sound.mp4", args.minutes)
        n_frames = int(args.minutes * 60 * FPS)
        bare_s, samples = best_of(args.repeats, lambda: bare_decode(path))
        ours_s, track = best_of(args.repeats, lambda: read_audio(path, n_frames, FPS))
    assert track.valid.mean() > 0.99, track.issues
    print(f"decode, {args.minutes:g} min of 48 kHz stereo AAC ({samples} samples):")
    print(f"  bare PyAV decode        {bare_s / hours:7.1f} s per hour of audio")
    print(f"  read_audio (16k mono)   {ours_s / hours:7.1f} s per hour of audio   ratio {ours_s / bare_s:.2f}")

    encoder = build_audio_encoder(args.encoder, device=args.device, dtype=args.dtype, batch_size=args.batch)
    plan = SamplingPlan()
    lay = plan.layout(n_frames)
    spans = StepSpans(lay.image_frames, plan.image_every, n_frames, FPS)
    audio_rows(encoder, AudioTrack(track.samples[: 30 * RATE], track.valid[: 30 * RATE]),
               StepSpans(lay.image_frames[lay.image_frames < 30 * FPS], plan.image_every, 30 * FPS, FPS))  # warm-up
    counts = AudioCounts()
    once_s, _ = best_of(1, lambda: audio_rows(encoder, track, spans, counts))
    print(f"encode with {args.encoder} on {args.device} ({args.dtype}), chunks of {encoder.chunk_seconds:g} s "
          f"+ {encoder.context_seconds:g} s context, batch {args.batch}:")
    print(f"  track once, pooled      {once_s / hours:7.1f} s per hour of audio "
          f"({hours / once_s:.3f} h of audio per s); samples fed / track {counts.samples / len(track.samples):.2f}")
    short = int(args.window_minutes * 60 * FPS)
    part = AudioTrack(track.samples[: int(short / FPS * RATE)], track.valid[: int(short / FPS * RATE)])
    lay_short = plan.layout(short)
    once_short, _ = best_of(1, lambda: audio_rows(
        encoder, part, StepSpans(lay_short.image_frames, plan.image_every, short, FPS)))
    naive_s, fed = best_of(1, lambda: window_by_window(encoder, part, plan, short))
    print(f"  window by window        {naive_s / (args.window_minutes / 60):7.1f} s per hour of audio "
          f"(samples fed / track {fed / len(part.samples):.2f}); track once / window by window "
          f"{once_short / naive_s:.2f}")


if __name__ == "__main__":
    main()
