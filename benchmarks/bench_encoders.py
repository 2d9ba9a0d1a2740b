"""Throughput of the stage-1 encoders, with random weights, through their public batch calls.

For each encoder: the build time, the first call (for VideoPrism: the jit compilation, plus the
first run) separated from the steady state, then items/s and the analytical FLOP rate. On cuda
the FLOP rate is also printed as a fraction of the peak (`--peak-tflops`, default the H100/H200
dense tensor-core peak for the dtype). Baselines measured in the same run, printed as ratios:

- VideoPrism: transformers' PyTorch `VideoPrismVisionModel`, same architecture and input;
- CLIP preprocessing: open_clip's own per-image PIL transform vs our batched tensor one.

    python benchmarks/bench_encoders.py                        # CPU, fp32, about 3 minutes on 2 idle cores
    python benchmarks/bench_encoders.py --quick                # CPU, about 2 minutes
    python benchmarks/bench_encoders.py --device cuda --dtype bf16
    python benchmarks/bench_encoders.py --only videoprism-base clip-vit-l-14
    python benchmarks/bench_encoders.py --smoke                # seconds: the tiny encoders, checks that it runs

Ratios against the baselines are timed alternately (ours, theirs, ours, ...), best of the
iterations, with CPU seconds next to wall seconds (benchmarks/timing.py).

Real-size architectures: VideoPrism-base (16 x 288 x 288 clips) and CLIP ViT-L-14 (224 px);
the inputs are 16 frames of 360 x 640 (VideoPrism resizes them) and 360 x 640 images (CLIP
resizes and crops), as decoded video would be.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("FGVU_CACHE_DIR", os.path.join(tempfile.gettempdir(), "fgvu-bench-cache"))

from timing import add_smoke_flag, best_of  # noqa: E402

# Dense tensor-core peaks of one H100 SXM / H200 (same compute), FLOP/s; fp32 runs as TF32.
DEFAULT_PEAK_TFLOPS = {"bf16": 989.0, "fp16": 989.0, "fp32": 494.5}
FRAME_SHAPE = (360, 640, 3)
SMOKE = ("videoprism-tiny", "clip-tiny", "captioner-tiny")  # what --smoke runs


@dataclass
class Plan:
    """Items per call, steady-state iterations, and the encoder's own batch size (default: all at once)."""

    batch: int
    iters: int
    chunk: int | None = None


def transformer_block_flops(seq: int, dim: int, mlp: int) -> float:
    """FLOPs (2 per multiply-add) of one pre-norm transformer block over one sequence."""
    projections = 4 * 2 * seq * dim * dim  # q, k, v, output
    attention = 2 * 2 * seq * seq * dim  # QK^T and PV
    feed_forward = 2 * 2 * seq * dim * mlp
    return projections + attention + feed_forward


def videoprism_clip_flops(config, frames: int) -> float:
    """FLOPs of one clip through the factorized encoder at its native resolution."""
    n = config.tokens_per_frame
    d, m, p = config.model_dim, config.mlp_dim, config.patch_size
    patch = frames * n * 2 * (p * p * 3) * d
    spatial = frames * config.num_spatial_layers * transformer_block_flops(n, d, m)
    temporal = n * config.num_temporal_layers * transformer_block_flops(frames, d, m)
    return patch + spatial + temporal


def clip_image_flops(model_name: str) -> float:
    """FLOPs of one image through an open_clip ViT image tower (class token included)."""
    import open_clip

    vision = open_clip.get_model_config(model_name)["vision_cfg"]
    width, layers, patch, size = vision["width"], vision["layers"], vision["patch_size"], vision["image_size"]
    mlp = int(width * vision.get("mlp_ratio", 4.0))
    patches = (size // patch) ** 2
    embed = 2 * patches * patch * patch * 3 * width
    return embed + layers * transformer_block_flops(patches + 1, width, mlp)


def time_calls(call: Callable[[], object], iters: int) -> tuple[float, float]:
    """(first call seconds, mean seconds of `iters` further calls). `call` must block until done."""
    start = time.perf_counter()
    call()
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(iters):
        call()
    return first, (time.perf_counter() - start) / max(iters, 1)


def report(
    name: str,
    unit: str,
    batch: int,
    build: float,
    first: float,
    steady: float,
    flops_per_item: float | None,
    peak: float | None,
) -> float:
    """Print one line; returns items/s."""
    rate = batch / steady
    line = (
        f"{name:<28} build {build:6.1f} s | first call {first:7.2f} s "
        f"(compile/warm-up ~{max(first - steady, 0.0):6.2f} s) | {rate:9.2f} {unit}/s (batch {batch})"
    )
    if flops_per_item:
        achieved = flops_per_item * rate
        line += f" | {achieved / 1e9:10.1f} GFLOP/s"
        if peak:
            line += f" = {achieved / peak:6.1%} of peak"
    print(line, flush=True)
    return rate


def random_frames(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def bench_videoprism(variant: str, args, plan: Plan, peak: float | None) -> None:
    from fgvu.extract.encoders.videoprism import VideoPrismEncoder

    start = time.perf_counter()
    encoder = VideoPrismEncoder.random(
        variant, device=args.device, dtype=args.dtype, batch_size=plan.chunk or plan.batch
    )
    build = time.perf_counter() - start
    config = encoder.model.config
    clips = random_frames((plan.batch, config.num_frames, *FRAME_SHAPE))
    first, steady = time_calls(lambda: encoder.encode_clips(clips), plan.iters)
    report(
        f"{variant} ({encoder.model.dtype})",
        "clips",
        plan.batch,
        build,
        first,
        steady,
        videoprism_clip_flops(config, config.num_frames),
        peak,
    )
    if args.device == "cuda":  # the model alone, input already resized on the device: the upload/resize overhead
        import jax

        from fgvu.extract.encoders.videoprism import _to_model_input

        chunk = plan.chunk or plan.batch
        frames = _to_model_input(jax.device_put(clips[:chunk], encoder.model.device), config.resolution)
        first, steady = time_calls(lambda: jax.block_until_ready(encoder.model.pooled(frames)), plan.iters)
        flops = videoprism_clip_flops(config, config.num_frames)
        report("  model only (input on GPU)", "clips", chunk, 0.0, first, steady, flops, peak)
    real_size_on_cpu_quick = args.quick and args.device == "cpu" and variant != "videoprism-tiny"
    if args.with_baselines and not real_size_on_cpu_quick:
        bench_videoprism_transformers(encoder, clips, args, plan)


def bench_videoprism_transformers(encoder, clips: np.ndarray, args, plan: Plan) -> None:
    """transformers' PyTorch VideoPrism of the same architecture on the same input, resized by torch,
    timed alternately with ours.

    Its weights are random too: they do not change the speed (the parity test checks the values).
    """
    import torch
    import transformers

    if not hasattr(transformers, "VideoPrismVisionModel"):
        print(f"  (transformers {transformers.__version__} has no VideoPrism: baseline skipped)", flush=True)
        return
    from transformers import VideoPrismVisionModel

    from fgvu.extract.encoders.device import torch_dtype
    from fgvu.extract.encoders.videoprism_model import transformers_vision_config

    config = encoder.model.config
    hf_config = transformers_vision_config(config)
    device = "cuda" if args.device.startswith("cuda") else "cpu"
    dtype = torch_dtype(encoder.model.dtype)
    start = time.perf_counter()
    model = VideoPrismVisionModel(hf_config).to(device=device, dtype=dtype).eval()
    build = time.perf_counter() - start
    b, t = clips.shape[:2]

    def call():  # the same work as encode_clips: upload uint8, resize, encode, pool per frame, download
        with torch.inference_mode():
            frames = torch.from_numpy(clips).to(device).permute(0, 1, 4, 2, 3).flatten(0, 1).float() / 255.0
            frames = torch.nn.functional.interpolate(frames, size=config.resolution, mode="bilinear", antialias=True)
            tokens = model(frames.unflatten(0, (b, t)).to(dtype)).last_hidden_state
            tokens.float().unflatten(1, (t, -1)).mean(dim=2).cpu()

    first, steady = time_calls(call, plan.iters)
    report("  transformers torch baseline", "clips", plan.batch, build, first, steady, None, None)
    best = best_of({"ours": lambda: encoder.encode_clips(clips), "theirs": call}, plan.iters)
    print(f"  ratio ours / transformers (best of {plan.iters}, interleaved): "
          f"{best['theirs'].wall / best['ours'].wall:.2f}x wall, {best['theirs'].cpu / best['ours'].cpu:.2f}x CPU "
          f"(ours {best['ours']}, theirs {best['theirs']})", flush=True)


def bench_clip(label: str, model_name: str, args, plan: Plan, peak: float | None) -> None:
    from fgvu.extract.encoders.clip import OpenClipEncoder

    start = time.perf_counter()
    encoder = OpenClipEncoder(model_name, None, device=args.device, dtype=args.dtype, batch_size=plan.batch)
    build = time.perf_counter() - start
    images = random_frames((plan.batch, *FRAME_SHAPE))
    first, steady = time_calls(lambda: encoder.encode_images(images), plan.iters)
    flops = None if model_name.startswith("fgvu-") else clip_image_flops(model_name)
    report(f"{label} images ({encoder.dtype})", "images", plan.batch, build, first, steady, flops, peak)
    texts = [f"a person doing thing number {i} in a video" for i in range(plan.batch)]
    first, steady = time_calls(lambda: encoder.encode_texts(texts), plan.iters)
    report(f"{label} texts", "texts", plan.batch, 0.0, first, steady, None, None)
    if args.with_baselines and not model_name.startswith("fgvu-"):
        bench_clip_preprocessing(encoder, images, plan)


def bench_clip_preprocessing(encoder, images: np.ndarray, plan: Plan) -> None:
    """Our batched tensor preprocessing vs open_clip's per-image PIL transform (the usual loop)."""
    import torch
    from open_clip.transform import image_transform
    from PIL import Image

    from fgvu.extract.encoders.clip import preprocess_images

    cfg = encoder.preprocess_cfg
    transform = image_transform(
        encoder.image_size,
        is_train=False,
        mean=cfg["mean"],
        std=cfg["std"],
        resize_mode=cfg.get("resize_mode"),
        interpolation=cfg.get("interpolation"),
    )

    def ours():
        x = preprocess_images(torch.from_numpy(images).to(encoder.device), encoder.image_size, cfg)
        x.cpu()

    def pil_loop():
        torch.stack([transform(Image.fromarray(image)) for image in images])

    ours()  # warm-up of both
    pil_loop()
    best = best_of({"ours": ours, "pil": pil_loop}, plan.iters)
    print(
        f"  preprocessing: batched tensors {plan.batch / best['ours'].wall:9.1f} images/s ({best['ours']}) vs PIL "
        f"loop {plan.batch / best['pil'].wall:9.1f} images/s ({best['pil']}): ratio "
        f"{best['pil'].wall / best['ours'].wall:.2f}x wall, {best['pil'].cpu / best['ours'].cpu:.2f}x CPU "
        f"(best of {plan.iters}, interleaved)",
        flush=True,
    )


def bench_captioner(args, plan: Plan) -> None:
    from fgvu.extract.datasets.dvd import DVDAdapter
    from fgvu.extract.encoders.registry import build_captioner

    start = time.perf_counter()
    tokens = 2 if args.smoke else 30
    captioner = build_captioner("captioner-tiny", device=args.device, batch_size=plan.batch, max_new_tokens=tokens)
    build = time.perf_counter() - start
    images = random_frames((plan.batch, *FRAME_SHAPE))
    first, steady = time_calls(lambda: captioner.caption(images, DVDAdapter.default_prompt), plan.iters)
    report("captioner-tiny", "captions", plan.batch, build, first, steady, None, None)


def plans(device: str, quick: bool, smoke: bool = False) -> dict[str, Plan]:
    """Batch sizes and iteration counts: small on CPU, where one VideoPrism-base clip is ~1 TFLOP."""
    if smoke:
        return {name: Plan(2, 1) for name in SMOKE}
    if device == "cpu":
        tiny = Plan(8, 2 if quick else 5)
        return {
            "videoprism-tiny": tiny,
            "clip-tiny": Plan(16, tiny.iters),
            "captioner-tiny": Plan(8, tiny.iters),
            "videoprism-base": Plan(1, 1),
            "clip-vit-l-14": Plan(2, 1),
        }
    iters = 5 if quick else 20
    return {
        "videoprism-tiny": Plan(32, iters),
        "clip-tiny": Plan(256, iters),
        "captioner-tiny": Plan(32, iters),
        "videoprism-base": Plan(32, iters, chunk=8),  # 4 chunks: uploads overlap encoding
        "clip-vit-l-14": Plan(128, iters),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--dtype",
        choices=["fp32", "bf16", "fp16"],
        default=None,
        help="default fp32 on cpu (bf16 is several times slower there), bf16 on cuda",
    )
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="peak FLOP/s of the GPU for --dtype, in TFLOP/s (default: H100/H200 dense tensor-core peak)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="fewer iterations; on cpu, no transformers baseline at real size"
    )
    parser.add_argument(
        "--no-baselines",
        dest="with_baselines",
        action="store_false",
        help="skip the transformers VideoPrism and PIL preprocessing baselines",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        default=None,
        choices=["videoprism-tiny", "clip-tiny", "captioner-tiny", "videoprism-base", "clip-vit-l-14"],
    )
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:
        args.only = [name for name in args.only or SMOKE if name in SMOKE]
    args.dtype = args.dtype or ("fp32" if args.device == "cpu" else "bf16")
    peak = None
    if args.device == "cuda":
        peak = (args.peak_tflops or DEFAULT_PEAK_TFLOPS[args.dtype]) * 1e12
        import jax
        import torch

        print(f"torch: {torch.cuda.get_device_name(0)}; jax: {jax.devices()}")
    print(f"device {args.device}, dtype {args.dtype}" + (f", peak {peak / 1e12:.0f} TFLOP/s" if peak else ""))

    selected = plans(args.device, args.quick, args.smoke)
    runners = {
        "videoprism-tiny": lambda p: bench_videoprism("videoprism-tiny", args, p, peak),
        "clip-tiny": lambda p: bench_clip("clip-tiny", "fgvu-tiny-clip", args, p, peak),
        "captioner-tiny": lambda p: bench_captioner(args, p),
        "videoprism-base": lambda p: bench_videoprism("videoprism-base", args, p, peak),
        "clip-vit-l-14": lambda p: bench_clip("clip ViT-L-14", "ViT-L-14", args, p, peak),
    }
    for name in args.only or list(runners):
        runners[name](selected[name])


if __name__ == "__main__":
    main()
