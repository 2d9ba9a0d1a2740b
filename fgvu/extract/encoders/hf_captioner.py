"""Captions from any local Hugging Face transformers image-to-text model (BLIP-2, InstructBLIP, LLaVA-style).

The model directory is loaded through `AutoProcessor` and `AutoModelForImageTextToText`, never
from the hub. Captions are generated a batch at a time (greedy, beam search, or sampling with a
fixed seed when a temperature is given), and only the newly generated tokens are decoded.

`captioner-tiny` is a BLIP-2 model of a few thousand parameters with random weights and a tiny
byte-level BPE tokenizer trained on a fixed corpus. It is built once among the encoder assets
(`assets.build_once`) and then loaded like any other directory, so the whole path
(preprocessing, generation, decoding) is the real one; its captions are gibberish.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from fgvu.extract.encoders.assets import build_once
from fgvu.extract.encoders.base import (
    CAPTION_BATCH,
    Captioner,
    EncoderError,
    check_frames,
    check_unit_range,
    directory_sha256,
    make_fingerprint,
)
from fgvu.extract.encoders.device import resolve_device, resolve_dtype, torch_dtype

TINY_SEED = 0
# How some model families expect a question; others use their chat template or the raw prompt.
PROMPT_FORMATS = {"blip-2": "Question: {prompt} Answer:"}

_TINY_CORPUS = [
    "a person is smiling at the camera",
    "a woman looks surprised and happy",
    "a man frowns and looks angry",
    "two people are fighting in the street",
    "people walk calmly through a park",
    "a red ball moves fast and hits a blue square",
    "a green circle drifts slowly across the screen",
]
_TINY_RECIPE = {
    "seed": TINY_SEED,
    "vocab_size": 320,
    "image_size": 32,
    "patch_size": 16,
    "width": 32,
    "heads": 2,
    "mlp": 64,
    "layers": 1,
    "num_query_tokens": 4,
    "max_positions": 512,  # room for the longest default prompt plus generated tokens
    "corpus": _TINY_CORPUS,
}


def _build_tiny_tokenizer():
    """A byte-level BPE tokenizer trained on the fixed corpus (deterministic, milliseconds)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_TINY_RECIPE["vocab_size"],
        special_tokens=["<pad>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_TINY_CORPUS * 4, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="</s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


def _write_tiny_blip2(folder: Path) -> None:
    """Write a tiny random BLIP-2 (ViT + Q-Former + OPT) with its processor into `folder`."""
    import torch
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, BlipImageProcessor, OPTConfig

    r = _TINY_RECIPE
    tokenizer = _build_tiny_tokenizer()
    image_processor = BlipImageProcessor(size={"height": r["image_size"], "width": r["image_size"]})
    processor = Blip2Processor(
        image_processor=image_processor, tokenizer=tokenizer, num_query_tokens=r["num_query_tokens"]
    )
    small = dict(num_hidden_layers=r["layers"], num_attention_heads=r["heads"])
    text_config = OPTConfig(
        vocab_size=len(tokenizer),  # includes the <image> token the processor adds
        hidden_size=r["width"],
        ffn_dim=r["mlp"],
        word_embed_proj_dim=r["width"],
        max_position_embeddings=r["max_positions"],
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **small,
    )
    config = Blip2Config(
        vision_config=dict(
            hidden_size=r["width"],
            intermediate_size=r["mlp"],
            image_size=r["image_size"],
            patch_size=r["patch_size"],
            **small,
        ),
        qformer_config=dict(
            hidden_size=r["width"],
            intermediate_size=r["mlp"],
            encoder_hidden_size=r["width"],
            vocab_size=64,
            max_position_embeddings=64,
            **small,
        ),
        text_config=text_config.to_dict(),
        num_query_tokens=r["num_query_tokens"],
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(r["seed"])
        model = Blip2ForConditionalGeneration(config).eval()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)


def tiny_captioner_dir() -> Path:
    """The directory of the tiny BLIP-2 model among the encoder assets, built on first use."""
    import transformers

    recipe = json.dumps({**_TINY_RECIPE, "transformers": transformers.__version__.split(".")[0]}, sort_keys=True)
    digest = hashlib.sha256(recipe.encode()).hexdigest()[:12]
    return build_once(f"captioner-tiny-{digest}", _write_tiny_blip2)


def _processor_side(processor) -> int | None:
    """The square side the model's image processor resizes to, when it says."""
    size = getattr(getattr(processor, "image_processor", None), "size", None)
    if size is None:
        return None
    if not isinstance(size, dict):
        size = {key: getattr(size, key, None) for key in ("height", "shortest_edge")}
    side = size.get("height") or size.get("shortest_edge")
    return int(side) if side else None


class TransformersCaptioner(Captioner):
    """A local transformers image-to-text model generating one caption per image, in batches."""

    def __init__(
        self,
        model_dir: str | Path,
        *,
        device: str = "auto",
        dtype: str = "auto",
        max_new_tokens: int = 30,
        num_beams: int = 1,
        temperature: float | None = None,
        batch_size: int = CAPTION_BATCH,
        seed: int = 0,
        variant: str | None = None,
        checkpoint: str | None = None,
    ):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise EncoderError(
                f"captioner {model_dir}: not a transformers model directory (no config.json); download one with "
                f"`huggingface-cli download <repo> --local-dir {model_dir}` on a machine with internet"
            )
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        try:
            self.processor = AutoProcessor.from_pretrained(model_dir, local_files_only=True)
            model = AutoModelForImageTextToText.from_pretrained(
                model_dir, dtype=torch_dtype(self.dtype), local_files_only=True
            )
        except (OSError, ValueError, KeyError) as exc:
            raise EncoderError(f"captioner {model_dir}: cannot load it as an image-text-to-text model ({exc})") from exc
        self.model = model.to(self.device).eval()
        self.tokenizer = self.processor.tokenizer
        self.tokenizer.padding_side = "left"  # decoder-only models generate after the prompt
        self.model_type = self.model.config.model_type
        self.input_size = _processor_side(self.processor)
        self.max_new_tokens = int(max_new_tokens)
        self.num_beams = int(num_beams)
        self.temperature = temperature
        self.batch_size = int(batch_size)
        self.seed = seed
        self._torch = torch
        generation = {"max_new_tokens": self.max_new_tokens, "num_beams": self.num_beams, "temperature": temperature}
        self.fingerprint = make_fingerprint(
            name="captioner",
            variant=variant or f"{self.model_type}:{model_dir.name}",
            dim=0,
            preprocessing={"generation": generation, "prompt_format": self._prompt_format()},
            checkpoint=checkpoint or directory_sha256(model_dir),
        )

    def _prompt_format(self) -> str:
        if getattr(self.processor, "chat_template", None):
            return "chat-template"
        return PROMPT_FORMATS.get(self.model_type, "{prompt}")

    def _format_prompt(self, prompt: str) -> str:
        if getattr(self.processor, "chat_template", None):
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
            return self.processor.apply_chat_template(messages, add_generation_prompt=True)
        return PROMPT_FORMATS.get(self.model_type, "{prompt}").format(prompt=prompt)

    def _generate(self, inputs):
        torch = self._torch
        kwargs = {"max_new_tokens": self.max_new_tokens, "num_beams": self.num_beams, "do_sample": False}
        if self.temperature is None or self.temperature <= 0:
            return self.model.generate(**inputs, **kwargs)
        kwargs.update(do_sample=True, temperature=float(self.temperature))
        with torch.random.fork_rng(devices=[torch.device(self.device)] if self.device != "cpu" else []):
            torch.manual_seed(self.seed)  # sampling with a fixed seed: same images, same captions
            return self.model.generate(**inputs, **kwargs)

    def caption(self, images: np.ndarray, prompt: str) -> list[str]:
        """(B, H, W, 3) uint8 or float in [0, 1] + a prompt -> B captions."""
        torch = self._torch
        check_frames(images, 4, "captioner images")
        check_unit_range(images, "captioner images")
        if images.dtype != np.uint8:
            images = np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8)
        text = self._format_prompt(prompt)
        captions: list[str] = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                chunk = torch.from_numpy(
                    np.require(images[start : start + self.batch_size], requirements=["C", "W"])
                ).permute(0, 3, 1, 2)
                inputs = self.processor(images=list(chunk), text=[text] * len(chunk), return_tensors="pt", padding=True)
                inputs = inputs.to(self.device)
                if "pixel_values" in inputs and self.dtype != "fp32":
                    inputs["pixel_values"] = inputs["pixel_values"].to(torch_dtype(self.dtype))
                output = self._generate(inputs)
                prompt_ids = inputs["input_ids"]
                n = prompt_ids.shape[1]
                # Decoder-only models return the prompt followed by the new tokens; strip the prompt.
                if output.shape[1] >= n and torch.equal(output[:, :n], prompt_ids):
                    output = output[:, n:]
                captions.extend(t.strip() for t in self.tokenizer.batch_decode(output, skip_special_tokens=True))
        return captions
