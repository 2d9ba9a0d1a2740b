"""Speech models from transformers as audio encoders: WavLM, wav2vec 2.0, HuBERT.

`SpeechEncoder(model_dir)` loads any local transformers model of the wav2vec2 family (a
convolutional feature encoder with `conv_kernel`/`conv_stride`, then a Transformer) and
returns its last hidden state: one embedding per 20 ms (320 samples at 16 kHz, each seeing
400). Waveforms are normalised per track when the model's feature extractor says
`do_normalize` (wav2vec2-base does; WavLM and HuBERT base do not).

Names (`fgvu.extract.encoders.registry`):

- `audio:wavlm-base-plus` (the default audio encoder), `audio:wav2vec2-base`, `audio:hubert-base`:
  the hub checkpoints microsoft/wavlm-base-plus, facebook/wav2vec2-base and
  facebook/hubert-base-ls960, taken from the Hugging Face cache, or downloaded when online;
  `audio:wavlm-base-plus:/path/to/dir` (or just `audio:/path/to/dir`) loads a local copy;
- `audio-tiny`: a WavLM of a few thousand parameters with random weights from a fixed seed,
  built once among the encoder assets and then loaded like any directory, so the whole path
  is the real one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

import numpy as np

from fgvu.extract.encoders.assets import build_once, hub_offline
from fgvu.extract.encoders.base import AudioEncoder, EncoderError, directory_sha256, make_fingerprint
from fgvu.extract.encoders.device import resolve_device, resolve_dtype, torch_dtype

RATE = 16000
HUB_MODELS = {
    "wavlm-base-plus": "microsoft/wavlm-base-plus",
    "wav2vec2-base": "facebook/wav2vec2-base",
    "hubert-base": "facebook/hubert-base-ls960",
}
MODEL_FILES = ["*.json", "*.safetensors", "*.bin"]
TINY_SEED = 0
# The conv front end keeps the real kernels and strides (20 ms hop, 25 ms receptive field)
# with 16 channels; a 2-layer, 32-wide Transformer follows.
_TINY_RECIPE = {
    "seed": TINY_SEED,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": [16] * 7,
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 4,
    "do_normalize": True,
}


@contextlib.contextmanager
def _no_transformers_bars():
    """Keep transformers' per-load progress bars off (fgvu shows its own), then restore the setting."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def _write_tiny_wavlm(folder: Path) -> None:
    """Write a tiny random WavLM and its feature extractor config into `folder`."""
    import torch
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMModel

    r = {k: v for k, v in _TINY_RECIPE.items() if k not in ("seed", "do_normalize")}
    config = WavLMConfig(**r, feat_extract_norm="group")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_TINY_RECIPE["seed"])
        model = WavLMModel(config).eval()
    with _no_transformers_bars():
        model.save_pretrained(folder)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=RATE, padding_value=0.0,
                             do_normalize=_TINY_RECIPE["do_normalize"],
                             return_attention_mask=False).save_pretrained(folder)


def tiny_audio_dir() -> Path:
    """The directory of the tiny WavLM among the encoder assets, built on first use."""
    import transformers

    recipe = json.dumps({**_TINY_RECIPE, "transformers": transformers.__version__.split(".")[0]}, sort_keys=True)
    digest = hashlib.sha256(recipe.encode()).hexdigest()[:12]
    return build_once(f"audio-tiny-{digest}", _write_tiny_wavlm)


def hub_model_dir(name: str) -> Path:
    """The local snapshot of a known hub model: from the Hugging Face cache, or downloaded when online."""
    from huggingface_hub import snapshot_download

    repo = HUB_MODELS[name]
    how_to = (f"pass a local copy (audio:{name}:/path/to/dir, made with `huggingface-cli download {repo} "
              f"--local-dir DIR` on a machine with internet), or run once online so the hub cache has it")
    try:
        return Path(snapshot_download(repo, allow_patterns=MODEL_FILES, local_files_only=hub_offline()))
    except Exception as e:  # huggingface_hub raises several types: not cached, offline, network
        if hub_offline():
            raise EncoderError(f"audio encoder {name} ({repo}) is not in the Hugging Face cache and "
                               f"HF_HUB_OFFLINE is set; {how_to}") from None
        raise EncoderError(f"audio encoder {name} ({repo}): download failed ({e}); {how_to}") from None


def _conv_geometry(config) -> tuple[list[int], list[int]]:
    kernels, strides = list(getattr(config, "conv_kernel", [])), list(getattr(config, "conv_stride", []))
    if not kernels or len(kernels) != len(strides):
        raise EncoderError(f"audio model {getattr(config, 'model_type', '?')}: not a wav2vec2-style model "
                           "(no conv_kernel/conv_stride in its config)")
    return kernels, strides


class SpeechEncoder(AudioEncoder):
    """A local transformers speech model (WavLM, wav2vec 2.0, HuBERT, ...) embedding 16 kHz waveforms."""

    def __init__(self, model_dir: str | Path, *, device: str = "auto", dtype: str = "auto", batch_size: int = 8,
                 chunk_seconds: float = 20.0, context_seconds: float = 2.0, variant: str | None = None,
                 checkpoint: str | None = None):
        import torch
        from transformers import AutoConfig, AutoModel

        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise EncoderError(f"audio encoder {model_dir}: not a transformers model directory (no config.json)")
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        try:
            config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
            kernels, strides = _conv_geometry(config)
            with _no_transformers_bars():
                model = AutoModel.from_pretrained(model_dir, local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            raise EncoderError(f"audio encoder {model_dir}: cannot load it as a speech model ({exc})") from exc
        self.model = model.to(self.device).eval()
        self.kernels, self.strides = kernels, strides
        self.hop = int(np.prod(strides))
        # each layer widens what one output sees by (kernel - 1) of its input steps
        self.receptive_field = 1 + sum((k - 1) * int(np.prod(strides[:i])) for i, k in enumerate(kernels))
        self.normalize = _do_normalize(model_dir)
        self.dim = int(config.hidden_size)
        self.batch_size = int(batch_size)
        # chunks are whole hops, so every chunk's frames fall on the one frame grid of the track
        self.chunk_seconds = round(chunk_seconds * RATE / self.hop) * self.hop / RATE
        self.context_seconds = round(context_seconds * RATE / self.hop) * self.hop / RATE
        self._torch = torch
        preprocessing = {"rate": RATE, "mono": "mean of the channels without LFE", "normalize": self.normalize,
                         "normalized_over": "each chunk with its context" if self.normalize else None,
                         "chunk_seconds": self.chunk_seconds, "context_seconds": self.context_seconds,
                         "output": "last_hidden_state", "hop": self.hop, "receptive_field": self.receptive_field}
        self.fingerprint = make_fingerprint(
            name="audio", variant=variant or f"{config.model_type}:{model_dir.name}", dim=self.dim,
            preprocessing=preprocessing, checkpoint=checkpoint or directory_sha256(model_dir))

    def frames_for(self, length: int) -> int:
        """Frames for `length` samples, layer by layer as the conv stack computes them."""
        for k, s in zip(self.kernels, self.strides):
            if length < k:
                return 0
            length = (length - k) // s + 1
        return length

    def _autocast(self):
        torch = self._torch
        if self.dtype == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.split(":")[0], dtype=torch_dtype(self.dtype))

    def encode_waves(self, waves: np.ndarray) -> np.ndarray:
        """(B, L) float32 waveforms at 16 kHz -> (B, frames_for(L), D) float32."""
        torch = self._torch
        waves = np.asarray(waves, np.float32)
        if waves.ndim != 2:
            raise EncoderError(f"audio encoder: expected waveforms shaped (B, L), got {waves.shape}")
        if waves.shape[1] < self.receptive_field:
            return np.zeros((len(waves), 0, self.dim), np.float32)
        with torch.inference_mode(), self._autocast():
            x = torch.from_numpy(np.ascontiguousarray(waves)).to(self.device)
            out = self.model(input_values=x).last_hidden_state
        return out.float().cpu().numpy()


def _do_normalize(model_dir: Path) -> bool:
    """The feature extractor's `do_normalize` (True when the directory has no preprocessor config)."""
    path = model_dir / "preprocessor_config.json"
    if not path.is_file():
        return True
    try:
        return bool(json.loads(path.read_text()).get("do_normalize", True))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EncoderError(f"audio encoder {model_dir}: preprocessor_config.json is not JSON ({e})") from None
