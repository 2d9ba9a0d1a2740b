"""MiniGPT-4 assembled from transformers components: the image bridge, the LLM, and caption generation.

The model is the official one (Vision-CAIR/MiniGPT-4), rebuilt from parts that transformers ships:

- EVA ViT-g/14 is transformers' `Blip2VisionModel` with the EVA-g shape; its `post_layernorm`
  plays the role of BLIP-2's `ln_vision` (a plain LayerNorm with eps 1e-5);
- Vicuna v0 variant: the BLIP-2 Q-Former (`Blip2QFormerModel`) with 32 learned query tokens;
  Llama-2 variant: no Q-Former, the CLS token is dropped and each 4 adjacent patch tokens are
  concatenated;
- `llama_proj`, one linear layer into the LLM's embedding space;
- a Llama-family causal LM.

Image tokens enter the conversation prompt through `inputs_embeds`, at the `<ImageHere>`
placeholder, exactly as the official `get_context_emb` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from fgvu.extract.encoders.base import check_frames, check_unit_range
from fgvu.extract.encoders.minigpt4_config import MiniGPT4Config, MiniGPT4Error
from fgvu.extract.encoders.minigpt4_conversation import (
    IMAGE_PLACEHOLDER,
    TEMPLATES,
    GenerationSettings,
    clean_answer,
)

if TYPE_CHECKING:
    import torch


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
