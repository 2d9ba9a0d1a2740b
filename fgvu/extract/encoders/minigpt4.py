"""MiniGPT-4 as a captioner, assembled from transformers components.

The model is the official one (Vision-CAIR/MiniGPT-4), rebuilt from parts that transformers ships:

- EVA ViT-g/14 is transformers' `Blip2VisionModel` with the EVA-g shape; its `post_layernorm`
  plays the role of BLIP-2's `ln_vision` (a plain LayerNorm with eps 1e-5);
- Vicuna v0 variant: the BLIP-2 Q-Former (`Blip2QFormerModel`) with 32 learned query tokens;
  Llama-2 variant: no Q-Former, the CLS token is dropped and each 4 adjacent patch tokens are
  concatenated;
- `llama_proj`, one linear layer into the LLM's embedding space;
- a Llama-family causal LM, loaded with transformers from the `llm/` folder.

Image tokens enter the conversation prompt through `inputs_embeds`, at the `<ImageHere>`
placeholder, exactly as the official `get_context_emb` does. A converted directory (see
`fgvu.extract.encoders.minigpt4_convert`) holds `minigpt4.json`, `vision_bridge.safetensors`
(everything but the LLM) and `llm/` (a transformers checkpoint plus its tokenizer).

Entry point: `load_minigpt4(dir)`; `MiniGPT4Captioner` wraps it in the `Captioner` interface.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fgvu.extract.encoders.base import Captioner, EncoderError, check_frames, check_unit_range, make_fingerprint
from fgvu.extract.encoders.device import DTYPES, resolve_device, torch_dtype

if TYPE_CHECKING:
    import torch

CONFIG_FILE = "minigpt4.json"
BRIDGE_FILE = "vision_bridge.safetensors"
LLM_SUBDIR = "llm"
FORMAT_VERSION = 1
IMAGE_PLACEHOLDER = "<ImageHere>"
VARIANTS = ("vicuna0", "llama2")

# Blip2ImageEvalProcessor: resize to 224x224 (bicubic), then OpenAI CLIP normalisation.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# Above this many parameters the model is "full size": refused on CPU (fp32, minutes per caption).
CPU_MAX_PARAMS = 2_000_000_000


class MiniGPT4Error(EncoderError):
    """A converted MiniGPT-4 directory that is missing, malformed, or cannot run where asked."""


# ----------------------------------------------------------------------------------------------
# Architecture and the converted directory's config


@dataclass(frozen=True)
class VisionTowerSpec:
    """The EVA ViT shape (defaults: EVA-CLIP ViT-g/14 with its last layer removed, as in BLIP-2)."""

    hidden_size: int = 1408
    num_layers: int = 39
    num_heads: int = 16
    intermediate_size: int = 6144
    patch_size: int = 14
    image_size: int = 224
    layer_norm_eps: float = 1e-6
    ln_vision_eps: float = 1e-5  # BLIP-2's ln_vision is a default nn.LayerNorm

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


@dataclass(frozen=True)
class QFormerSpec:
    """The BLIP-2 Q-Former shape (defaults: BERT-base with cross-attention every second layer)."""

    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    cross_attention_frequency: int = 2
    num_query_tokens: int = 32
    layer_norm_eps: float = 1e-12


@dataclass(frozen=True)
class MiniGPT4Config:
    """What a converted directory records in `minigpt4.json`."""

    variant: str
    vision: VisionTowerSpec
    qformer: QFormerSpec | None
    llm_hidden_size: int
    merged_patch_tokens: int = 4  # Llama-2 variant: adjacent ViT tokens concatenated per LLM token
    image_mean: tuple[float, float, float] = CLIP_MEAN
    image_std: tuple[float, float, float] = CLIP_STD
    checksums: dict[str, str] = field(default_factory=dict)  # relative path -> sha256, from the converter

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise MiniGPT4Error(f"unknown MiniGPT-4 variant {self.variant!r}; expected one of {VARIANTS}")
        if (self.variant == "vicuna0") != (self.qformer is not None):
            raise MiniGPT4Error(f"variant {self.variant!r}: the Q-Former is used by 'vicuna0' only")
        if self.variant == "llama2" and self.vision.num_patches % self.merged_patch_tokens:
            raise MiniGPT4Error(
                f"{self.vision.num_patches} patches cannot be merged in groups of {self.merged_patch_tokens}"
            )

    @property
    def projection_in_features(self) -> int:
        """Width of what `llama_proj` reads: Q-Former outputs, or concatenated ViT tokens."""
        if self.qformer is not None:
            return self.qformer.hidden_size
        return self.vision.hidden_size * self.merged_patch_tokens

    @property
    def num_image_tokens(self) -> int:
        """How many LLM positions one image takes."""
        if self.qformer is not None:
            return self.qformer.num_query_tokens
        return self.vision.num_patches // self.merged_patch_tokens

    def to_json(self) -> dict:
        return {"format_version": FORMAT_VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, data: dict, source: str | Path = CONFIG_FILE) -> MiniGPT4Config:
        """Parse `minigpt4.json`; a wrong version or field is a `MiniGPT4Error` naming the file."""
        try:
            if data.get("format_version") != FORMAT_VERSION:
                raise MiniGPT4Error(
                    f"{source}: format_version {data.get('format_version')!r}, this fgvu reads {FORMAT_VERSION}"
                )
            fields = {k: v for k, v in data.items() if k != "format_version"}
            fields["vision"] = VisionTowerSpec(**fields["vision"])
            fields["qformer"] = QFormerSpec(**fields["qformer"]) if fields.get("qformer") else None
            fields["image_mean"] = tuple(fields.get("image_mean", CLIP_MEAN))
            fields["image_std"] = tuple(fields.get("image_std", CLIP_STD))
            return cls(**fields)
        except (KeyError, TypeError) as e:
            raise MiniGPT4Error(f"{source}: malformed MiniGPT-4 config ({e})") from e

    def checkpoint_digest(self) -> str:
        """One sha256 over the converter's per-file digests: the cache fingerprint's checkpoint."""
        if not self.checksums:
            return "unknown"
        return hashlib.sha256(json.dumps(sorted(self.checksums.items())).encode()).hexdigest()


# ----------------------------------------------------------------------------------------------
# Conversation templates (minigpt4/conversation/conversation.py, CONV_VISION_Vicuna0 / _LLama2)

SYSTEM_MESSAGE = (
    "Give the following image: <Img>ImageContent</Img>. "
    "You will be able to see the image once I provide it to you. Please answer my questions."
)


@dataclass(frozen=True)
class ConversationTemplate:
    """One turn of MiniGPT-4's `Conversation` with `SeparatorStyle.SINGLE`."""

    user_role: str
    assistant_role: str
    separator: str

    def render(self, question: str) -> str:
        """The prompt `Chat` builds after `upload_img`, `ask(question)` and `answer_prepare`."""
        user_message = f"<Img>{IMAGE_PLACEHOLDER}</Img> {question}"
        return SYSTEM_MESSAGE + self.separator + self.user_role + user_message + self.separator + self.assistant_role


TEMPLATES = {
    "vicuna0": ConversationTemplate(user_role="Human: ", assistant_role="Assistant: ", separator="###"),
    "llama2": ConversationTemplate(user_role="<s>[INST] ", assistant_role=" [/INST] ", separator=""),
}


def clean_answer(text: str, variant: str) -> str:
    """Cut a generated answer the way the official code does (stop sign, role echo)."""
    if variant == "vicuna0":
        return text.split("###")[0].split("Assistant:")[-1].strip()
    return text.split("</s>")[0].replace("<s>", "").split("[/INST]")[-1].strip()


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding: greedy by default; a temperature switches to sampling (top-p 0.9, as `Chat`)."""

    max_new_tokens: int = 30
    num_beams: int = 1
    temperature: float | None = None
    min_new_tokens: int = 0  # benchmarks force a fixed length with min_new_tokens == max_new_tokens

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or self.num_beams < 1 or not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise MiniGPT4Error(f"invalid generation settings: {self}")
        if self.temperature is not None and self.temperature <= 0:
            raise MiniGPT4Error(f"temperature must be positive, got {self.temperature}")


# ----------------------------------------------------------------------------------------------
# The model


def _torch():
    import torch

    return torch


def build_vision_bridge(config: MiniGPT4Config):
    """The image side (EVA ViT, ln_vision, Q-Former, llama_proj) with freshly initialised weights.

    Build it under `torch.device("meta")` to get only names and shapes (the converter does), or on a
    real device for random-weight models (tests, benchmarks).
    """
    torch = _torch()
    from transformers import Blip2QFormerConfig, Blip2VisionConfig, Blip2VisionModel
    from transformers.models.blip_2.modeling_blip_2 import Blip2QFormerModel

    class VisionBridge(torch.nn.Module):
        """Pixels -> LLM-space image tokens, as the official `encode_img`."""

        def __init__(self) -> None:
            super().__init__()
            v = config.vision
            self.vision_model = Blip2VisionModel(
                Blip2VisionConfig(
                    hidden_size=v.hidden_size,
                    intermediate_size=v.intermediate_size,
                    num_hidden_layers=v.num_layers,
                    num_attention_heads=v.num_heads,
                    image_size=v.image_size,
                    patch_size=v.patch_size,
                    layer_norm_eps=v.layer_norm_eps,
                    qkv_bias=True,
                    hidden_act="gelu",
                )
            )
            # transformers gives post_layernorm the encoder's eps; BLIP-2's ln_vision uses 1e-5.
            self.vision_model.post_layernorm.eps = v.ln_vision_eps
            q = config.qformer
            if q is not None:
                self.query_tokens = torch.nn.Parameter(torch.zeros(1, q.num_query_tokens, q.hidden_size))
                self.qformer = Blip2QFormerModel(
                    Blip2QFormerConfig(
                        hidden_size=q.hidden_size,
                        num_hidden_layers=q.num_layers,
                        num_attention_heads=q.num_heads,
                        intermediate_size=q.intermediate_size,
                        cross_attention_frequency=q.cross_attention_frequency,
                        encoder_hidden_size=v.hidden_size,
                        layer_norm_eps=q.layer_norm_eps,
                        use_qformer_text_input=False,
                        hidden_act="gelu",
                    )
                )
            self.llama_proj = torch.nn.Linear(config.projection_in_features, config.llm_hidden_size)

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            image_embeds = self.vision_model(pixel_values=pixel_values).last_hidden_state  # ln_vision applied
            if config.qformer is not None:
                queries = self.query_tokens.expand(image_embeds.shape[0], -1, -1)
                features = self.qformer(query_embeds=queries, encoder_hidden_states=image_embeds).last_hidden_state
            else:
                patches = image_embeds[:, 1:, :]  # drop CLS
                b, n, h = patches.shape
                features = patches.reshape(b, n // config.merged_patch_tokens, h * config.merged_patch_tokens)
            return self.llama_proj(features)

    return VisionBridge()


class MiniGPT4:
    """A loaded MiniGPT-4: image bridge + LLM + tokenizer + the variant's conversation template."""

    def __init__(self, config: MiniGPT4Config, bridge, llm, tokenizer) -> None:
        self.config = config
        self.bridge = bridge.eval()
        self.llm = llm.eval()
        self.tokenizer = tokenizer
        self.template = TEMPLATES[config.variant]

    @property
    def device(self) -> torch.device:
        return self.bridge.llama_proj.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.bridge.llama_proj.weight.dtype

    def prompt(self, question: str) -> str:
        """The full conversation prompt, with one `<ImageHere>`, as MiniGPT-4's `Chat` builds it."""
        return self.template.render(question)

    def preprocess(self, images: np.ndarray) -> torch.Tensor:
        """(B,H,W,3) uint8 or float [0,1] -> normalised (B,3,S,S) pixel values on the model's device.

        Batched tensor version of Blip2ImageEvalProcessor (bicubic resize with antialiasing, as PIL).
        """
        torch = _torch()
        check_frames(images, 4, "MiniGPT-4 images")
        check_unit_range(images, "MiniGPT-4 images")
        x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device)
        x = x.permute(0, 3, 1, 2).float()
        if images.dtype == np.uint8:
            x = x / 255.0
        size = self.config.vision.image_size
        if x.shape[-2:] != (size, size):
            x = torch.nn.functional.interpolate(
                x, size=(size, size), mode="bicubic", align_corners=False, antialias=True
            )
            x = x.clamp(0.0, 1.0)
        mean = torch.tensor(self.config.image_mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.config.image_std, device=x.device).view(1, 3, 1, 1)
        return ((x - mean) / std).to(self.dtype)

    def embed_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Preprocessed pixels (B,3,S,S) -> image tokens (B, n_tokens, llm_hidden), as `encode_img`."""
        torch = _torch()
        with torch.inference_mode():
            return self.bridge(pixel_values.to(self.device, self.dtype))

    def _embed_text(self, text: str, with_bos: bool) -> torch.Tensor:
        ids = self.tokenizer(text, return_tensors="pt", add_special_tokens=with_bos).input_ids.to(self.device)
        return self.llm.get_input_embeddings()(ids)[0]

    def _context_rows(self, image_tokens: torch.Tensor, prompt: str) -> torch.Tensor:
        """One sample's (L, hidden) context: text segments around `<ImageHere>`, BOS on the first only."""
        torch = _torch()
        segments = prompt.split(IMAGE_PLACEHOLDER)
        if len(segments) != 2:
            raise MiniGPT4Error(f"a MiniGPT-4 prompt needs exactly one {IMAGE_PLACEHOLDER}, got {len(segments) - 1}")
        before = self._embed_text(segments[0], with_bos=True)
        after = self._embed_text(segments[1], with_bos=False)
        return torch.cat([before, image_tokens.to(before.dtype), after], dim=0)

    def context_embeddings(self, pixel_values: torch.Tensor, prompt: str) -> torch.Tensor:
        """(B, L, llm_hidden): `prompt` with each image's tokens at `<ImageHere>`, as `get_context_emb`."""
        torch = _torch()
        image_tokens = self.embed_images(pixel_values)
        with torch.inference_mode():
            return torch.stack([self._context_rows(tokens, prompt) for tokens in image_tokens])

    def generation_inputs(self, pixel_values: torch.Tensor, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded `inputs_embeds` (B, L, hidden) and `attention_mask` (B, L), one prompt per image."""
        torch = _torch()
        if len(prompts) != len(pixel_values):
            raise MiniGPT4Error(f"{len(prompts)} prompts for {len(pixel_values)} images")
        image_tokens = self.embed_images(pixel_values)
        with torch.inference_mode():
            rows = [self._context_rows(tokens, prompt) for tokens, prompt in zip(image_tokens, prompts, strict=True)]
            length = max(r.shape[0] for r in rows)
            embeds = rows[0].new_zeros(len(rows), length, rows[0].shape[-1])
            mask = torch.zeros(len(rows), length, dtype=torch.long, device=embeds.device)
            for i, r in enumerate(rows):
                embeds[i, length - r.shape[0] :] = r
                mask[i, length - r.shape[0] :] = 1
        return embeds, mask

    def caption(self, images: np.ndarray, question: str | list[str], **generation) -> list[str]:
        """(B,H,W,3) images + a question (or one per image) -> B answers.

        `generation`: the fields of `GenerationSettings` (max_new_tokens, num_beams, temperature,
        min_new_tokens).
        """
        torch = _torch()
        settings = GenerationSettings(**generation)
        questions = [question] * len(images) if isinstance(question, str) else list(question)
        embeds, mask = self.generation_inputs(self.preprocess(images), [self.prompt(q) for q in questions])
        kwargs = dict(
            inputs_embeds=embeds,
            attention_mask=mask,
            max_new_tokens=settings.max_new_tokens,
            min_new_tokens=settings.min_new_tokens,
            num_beams=settings.num_beams,
            pad_token_id=self.tokenizer.eos_token_id,
            eos_token_id=self.tokenizer.eos_token_id,
        )
        if settings.temperature is None:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=settings.temperature, top_p=0.9)
        # Vicuna v0 ends its turn with the "###" separator; forcing a fixed length disables that stop.
        if self.config.variant == "vicuna0" and settings.min_new_tokens < settings.max_new_tokens:
            kwargs.update(stop_strings=["###"], tokenizer=self.tokenizer)
        with torch.inference_mode():
            tokens = self.llm.generate(**kwargs)
        texts = self.tokenizer.batch_decode(tokens, skip_special_tokens=True)
        return [clean_answer(t, self.config.variant) for t in texts]


# ----------------------------------------------------------------------------------------------
# Loading


def read_config(directory: str | Path) -> MiniGPT4Config:
    """The `minigpt4.json` of a converted directory, checked."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise MiniGPT4Error(
            f"{directory}: not a converted MiniGPT-4 directory (no {CONFIG_FILE}); "
            "make one with `fgvu convert minigpt4`"
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise MiniGPT4Error(f"{path}: invalid JSON ({e})") from e
    return MiniGPT4Config.from_json(data, source=path)


def count_parameters(directory: str | Path, config: MiniGPT4Config) -> int:
    """Parameters of the whole model, read from the shapes on disk and the LLM config (no weights loaded)."""
    torch = _torch()
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForCausalLM

    with safe_open(str(Path(directory) / BRIDGE_FILE), framework="pt") as f:
        bridge = sum(int(np.prod(f.get_slice(k).get_shape())) for k in f.keys())
    with torch.device("meta"):
        llm = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(Path(directory) / LLM_SUBDIR))
    return bridge + sum(p.numel() for p in llm.parameters())


def check_fits_device(n_params: int, device: torch.device) -> None:
    """Refuse the full-size model on CPU, saying what it would need."""
    if device.type == "cpu" and n_params > CPU_MAX_PARAMS:
        raise MiniGPT4Error(
            f"MiniGPT-4 has {n_params / 1e9:.1f}B parameters: on CPU it needs about "
            f"{n_params * 4 / 2**30:.0f} GiB of RAM in float32 and minutes per caption. Run it on a GPU "
            f"(about {n_params * 2 / 2**30:.0f} GiB in float16, less with 8-bit loading), or use a tiny model on CPU."
        )


def load_bridge(directory: str | Path, config: MiniGPT4Config, device: torch.device, dtype: torch.dtype):
    """The image side with the converted weights (built on `meta`, then the tensors are assigned)."""
    torch = _torch()
    from safetensors.torch import load_file

    path = Path(directory) / BRIDGE_FILE
    if not path.is_file():
        raise MiniGPT4Error(f"{directory}: missing {BRIDGE_FILE}")
    with torch.device("meta"):
        bridge = build_vision_bridge(config)
    state = load_file(str(path), device=str(device))
    result = bridge.load_state_dict(state, strict=False, assign=True)
    if result.missing_keys or result.unexpected_keys:
        raise MiniGPT4Error(
            f"{path}: does not match {CONFIG_FILE}; missing {result.missing_keys}, unexpected {result.unexpected_keys}"
        )
    return bridge.to(device=device, dtype=dtype)


def load_minigpt4(
    directory: str | Path, device: str = "auto", dtype: str | None = None, load_in_8bit: bool = False
) -> MiniGPT4:
    """Load a converted MiniGPT-4 directory.

    `device`: "auto" | "cpu" | "cuda[:N]". `dtype`: "fp16" (the GPU default, as the official
    model), "bf16" or "fp32" (the CPU default). `load_in_8bit`: the LLM in 8 bits (needs a GPU,
    bitsandbytes and accelerate).
    """
    torch = _torch()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = read_config(directory)
    llm_dir = Path(directory) / LLM_SUBDIR
    if not (llm_dir / "config.json").is_file():
        raise MiniGPT4Error(f"{directory}: missing {LLM_SUBDIR}/config.json")
    resolved = torch.device(resolve_device(device))
    check_fits_device(count_parameters(directory, config), resolved)
    dtype_name = dtype or ("fp32" if resolved.type == "cpu" else "fp16")
    if dtype_name not in DTYPES:
        raise MiniGPT4Error(f"MiniGPT-4: unknown dtype {dtype_name!r}; use one of {', '.join(DTYPES)}")
    weights_dtype = torch_dtype(dtype_name)

    # With accelerate, weights stream straight onto the GPU; without it they pass through RAM.
    has_accelerate = importlib.util.find_spec("accelerate") is not None
    llm_kwargs: dict = {"dtype": weights_dtype}
    if has_accelerate and resolved.type != "cpu":
        llm_kwargs["device_map"] = {"": str(resolved)}
    if load_in_8bit:
        if resolved.type != "cuda":
            raise MiniGPT4Error("MiniGPT-4: 8-bit loading needs a CUDA GPU")
        missing = [m for m in ("bitsandbytes", "accelerate") if importlib.util.find_spec(m) is None]
        if missing:
            raise MiniGPT4Error(
                f"MiniGPT-4: 8-bit loading needs {' and '.join(missing)} (pip install {' '.join(missing)})"
            )
        from transformers import BitsAndBytesConfig

        llm_kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
    llm = AutoModelForCausalLM.from_pretrained(llm_dir, **llm_kwargs)
    if "device_map" not in llm_kwargs:
        llm = llm.to(resolved)
    if llm.config.hidden_size != config.llm_hidden_size:
        raise MiniGPT4Error(
            f"{llm_dir}: LLM hidden size {llm.config.hidden_size}, but llama_proj outputs {config.llm_hidden_size}"
        )
    tokenizer = AutoTokenizer.from_pretrained(llm_dir)
    bridge = load_bridge(directory, config, resolved, weights_dtype)
    return MiniGPT4(config, bridge, llm, tokenizer)


def write_tiny_llama_tokenizer(directory: str | Path, corpus: list[str], vocab_size: int) -> int:
    """Train a small sentencepiece Llama tokenizer on `corpus` and save it in `directory` as transformers reads it.

    For tiny random-weight models (tests, benchmarks): it trains in milliseconds. `vocab_size` is a
    target, not a limit (the corpus may hold fewer pieces). Returns the tokenizer's real vocab size.
    """
    import io

    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="bpe",
        hard_vocab_limit=False,
        bos_id=1,
        eos_id=2,
        unk_id=0,
        pad_id=-1,
        character_coverage=1.0,
        minloglevel=2,
    )
    directory = Path(directory)
    (directory / "tokenizer.model").write_bytes(model.getvalue())
    # `from_pretrained` reads this; `LlamaTokenizer(vocab_file=...)` alone gives an empty tokenizer.
    (directory / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "LlamaTokenizer",
                "bos_token": "<s>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "add_bos_token": True,
                "add_eos_token": False,
            }
        )
    )
    return spm.SentencePieceProcessor(model_proto=model.getvalue()).get_piece_size()


# ----------------------------------------------------------------------------------------------
# The Captioner interface


class MiniGPT4Captioner(Captioner):
    """`captioner:minigpt4:<converted dir>`: captions in batches of `batch_size`."""

    def __init__(
        self,
        directory: str | Path,
        device: str = "auto",
        max_new_tokens: int = 30,
        num_beams: int = 1,
        temperature: float | None = None,
        batch_size: int = 16,
        load_in_8bit: bool = False,
    ) -> None:
        if batch_size < 1:
            raise MiniGPT4Error(f"batch_size must be positive, got {batch_size}")
        self.settings = GenerationSettings(max_new_tokens=max_new_tokens, num_beams=num_beams, temperature=temperature)
        self.batch_size = batch_size
        self.model = load_minigpt4(directory, device=device, load_in_8bit=load_in_8bit)
        config = self.model.config
        self.fingerprint = make_fingerprint(
            name="captioner:minigpt4",
            variant=config.variant,
            dim=0,  # captions are text; the text encoder's fingerprint carries the dimension
            preprocessing={
                "image": {
                    "size": config.vision.image_size,
                    "interpolation": "bicubic",
                    "mean": list(config.image_mean),
                    "std": list(config.image_std),
                },
                "prompt_format": TEMPLATES[config.variant].render("{prompt}"),
                "generation": dataclasses.asdict(self.settings),
                "precision": "int8" if load_in_8bit else str(self.model.dtype).removeprefix("torch."),
            },
            checkpoint=config.checkpoint_digest(),
        )

    def caption(self, images: np.ndarray, prompt: str) -> list[str]:
        """(B,H,W,3) uint8 or float [0,1] + the dataset's question -> B captions."""
        check_frames(images, 4, "MiniGPT-4 images")
        captions: list[str] = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            captions += self.model.caption(chunk, prompt, **dataclasses.asdict(self.settings))
        return captions
