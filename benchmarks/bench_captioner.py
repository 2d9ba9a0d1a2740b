"""Captioning throughput of the MiniGPT-4 captioner, with random weights.

Baseline: one image at a time (what MiniGPT-4's own `Chat` does), measured in the same run;
each batch size prints its captions/s and the ratio to that baseline. The whole caption path
runs: batched preprocessing, EVA ViT + Q-Former, `inputs_embeds` prompt, generation, decoding.
Every caption is exactly `--max-new-tokens` long (min_new_tokens = max_new_tokens), so the
numbers do not depend on where random weights happen to stop.

    python benchmarks/bench_captioner.py                                  # tiny model, CPU
    python benchmarks/bench_captioner.py --arch small --device cpu        # the 7b code path, scaled down
    python benchmarks/bench_captioner.py --device cuda --arch 7b          # EVA-g + Q-Former + Vicuna-7B, fp16
    python benchmarks/bench_captioner.py --smoke                          # seconds: checks that it runs

The batch sizes and the one-image baseline are timed alternately, best of `--repeats`, with
CPU seconds next to wall seconds (benchmarks/timing.py).

Architectures: `7b` is the Vicuna-7B MiniGPT-4 (EVA ViT-g/14, BERT-base Q-Former, Llama 4096x32);
`small` and `tiny` keep the same structure with fewer and narrower layers. The random model is
built directly on the target device in the target dtype, so it starts in seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fgvu.extract.encoders.minigpt4_config import MiniGPT4Config, MiniGPT4Error, QFormerSpec, VisionTowerSpec
from fgvu.extract.encoders.minigpt4_conversation import SYSTEM_MESSAGE
from fgvu.extract.encoders.minigpt4_loading import check_fits_device
from fgvu.extract.encoders.minigpt4_model import MiniGPT4, build_vision_bridge
from fgvu.extract.encoders.tiny_llama_tokenizer import write_tiny_llama_tokenizer
from timing import add_smoke_flag, best_of

QUESTION = (
    "Describe the facial expression of the person in terms of valence (positive or negative) and "
    "arousal (calm or excited), each as high, medium or low. Answer briefly."
)

ARCHS = {
    "7b": dict(
        vision=VisionTowerSpec(),
        qformer=QFormerSpec(),
        llm=dict(
            hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32, vocab_size=32000
        ),
    ),
    "small": dict(
        vision=VisionTowerSpec(hidden_size=176, num_layers=4, num_heads=2, intermediate_size=704),
        qformer=QFormerSpec(hidden_size=128, num_layers=4, num_heads=4, intermediate_size=512),
        llm=dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=4, vocab_size=32000),
    ),
    "tiny": dict(
        vision=VisionTowerSpec(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128, image_size=112),
        qformer=QFormerSpec(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128, num_query_tokens=8),
        llm=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, vocab_size=1000),
    ),
}


def train_tokenizer(directory: Path) -> None:
    """A small sentencepiece Llama tokenizer trained on the prompt text (ids stay below any vocab here)."""
    corpus = [SYSTEM_MESSAGE, "###Human: <Img></Img> " + QUESTION + "###Assistant: "] * 50
    write_tiny_llama_tokenizer(directory, corpus, vocab_size=300)


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build_random_model(arch: str, device: torch.device, dtype: torch.dtype, workdir: Path) -> MiniGPT4:
    """MiniGPT-4 (Vicuna v0 layout) with random weights, allocated directly on `device` in `dtype`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    spec = ARCHS[arch]
    llm_config = LlamaConfig(**spec["llm"], max_position_embeddings=2048)
    config = MiniGPT4Config(
        variant="vicuna0", vision=spec["vision"], qformer=spec["qformer"], llm_hidden_size=llm_config.hidden_size
    )
    with torch.device("meta"):  # shapes only: refuse the full-size model on CPU before allocating it
        n_params = sum(
            p.numel()
            for part in (build_vision_bridge(config), AutoModelForCausalLM.from_config(llm_config))
            for p in part.parameters()
        )
    check_fits_device(n_params, device)
    with torch.device(device), default_dtype(dtype):
        bridge = build_vision_bridge(config)
        llm = AutoModelForCausalLM.from_config(llm_config, dtype=dtype)
    train_tokenizer(workdir)
    model = MiniGPT4(config, bridge, llm, AutoTokenizer.from_pretrained(workdir))
    print(f"model: {arch}, {n_params / 1e6:,.1f}M parameters, {dtype}, on {device}")
    return model


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def caption_call(model: MiniGPT4, images: np.ndarray, tokens: int):
    """A call that captions `images` with exactly `tokens` new tokens and waits for the device."""

    def call() -> list[str]:
        captions = model.caption(images, QUESTION, max_new_tokens=tokens, min_new_tokens=tokens)
        sync(model.device)
        return captions

    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    parser.add_argument("--arch", choices=sorted(ARCHS), default="tiny")
    parser.add_argument(
        "--dtype", choices=["float16", "bfloat16", "float32"], help="default: float16 on GPU, float32 on CPU"
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", help="default: 16 64 on GPU, 4 16 on CPU")
    parser.add_argument("--max-new-tokens", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--frame-size", type=int, nargs=2, default=(360, 640), metavar=("H", "W"))
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:
        args.arch, args.batch_sizes, args.max_new_tokens, args.repeats = "tiny", [2], 2, 1
        args.frame_size = (64, 96)

    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    dtype = getattr(torch, args.dtype or ("float16" if on_gpu else "float32"))
    batch_sizes = args.batch_sizes or ([16, 64] if on_gpu else [4, 16])
    torch.manual_seed(0)
    if on_gpu:
        print(f"device: {torch.cuda.get_device_name(device)}")

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        try:
            model = build_random_model(args.arch, device, dtype, Path(tmp))
        except MiniGPT4Error as e:
            sys.exit(f"error: {e}")
        sync(device)
        print(f"build: {time.perf_counter() - start:.1f} s")
        frames = np.random.default_rng(0).integers(0, 256, size=(max(batch_sizes), *args.frame_size, 3), dtype=np.uint8)
        context = model.generation_inputs(model.preprocess(frames[:1]), [model.prompt(QUESTION)])[0]
        print(
            f"context: {context.shape[1]} positions ({model.config.num_image_tokens} image tokens), "
            f"{args.max_new_tokens} new tokens per caption, frames {args.frame_size[0]}x{args.frame_size[1]}"
        )

        caption_call(model, frames[:2], 2)()  # warm-up (kernels, allocator)
        calls = {1: caption_call(model, frames[:1], args.max_new_tokens)}
        calls.update({b: caption_call(model, frames[:b], args.max_new_tokens) for b in batch_sizes})
        best = best_of(calls, args.repeats)
        baseline = 1.0 / best[1].wall
        print(f"batch   1: {baseline:8.2f} captions/s  (baseline: one image at a time; {best[1]})")
        for batch in batch_sizes:
            memory = ""
            if on_gpu:  # one more call for the peak memory, outside the timings
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
                assert len(calls[batch]()) == batch
                memory = f", peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB"
            rate = batch / best[batch].wall
            print(f"batch {batch:3d}: {rate:8.2f} captions/s  ({rate / baseline:.1f}x baseline wall, "
                  f"{batch * best[1].cpu / best[batch].cpu:.1f}x CPU; {best[batch]}{memory})")
        image_seconds = min(_time_images(model, frames[: batch_sizes[-1]]) for _ in range(args.repeats))
        print(
            f"image side alone (preprocess + EVA + Q-Former) at batch {batch_sizes[-1]}: "
            f"{batch_sizes[-1] / image_seconds:.1f} images/s"
        )


def _time_images(model: MiniGPT4, frames: np.ndarray) -> float:
    sync(model.device)
    start = time.perf_counter()
    model.embed_images(model.preprocess(frames))
    sync(model.device)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
