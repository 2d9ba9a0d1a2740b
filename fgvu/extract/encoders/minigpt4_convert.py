"""Convert MiniGPT-4's official files into one directory that `load_minigpt4` reads.

Inputs, as the official repository uses them:
- `eva_vit_g.pth`: the EVA-CLIP ViT-g state dict (keys `cls_token`, `blocks.N.attn.qkv.weight`, ...);
- `blip2_pretrained_flant5xxl.pth`: `{"model": ...}` with `ln_vision`, `query_tokens`, `Qformer.bert.*`
  (Vicuna v0 variant only; the Llama-2 variant has no Q-Former);
- `pretrained_minigpt4*.pth`: `{"model": ...}` with `llama_proj`;
- a Vicuna / Llama-2-chat transformers directory (config, weights, tokenizer).

The official model loads these in that order into one module, each file overriding the keys it
shares with the previous ones; we merge them the same way, under the official key names, and
then map every parameter of our model to its official key(s). A key the model needs that no
file has is "missing"; a key no parameter uses and that is not known to be unused (BLIP-2's T5
projection, the Q-Former's text branch, EVA-CLIP's last layer) is "unexpected". Both stop the
conversion with the key names.

Output: `minigpt4.json`, `vision_bridge.safetensors` (source dtypes kept) and `llm/`.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from fgvu.extract.encoders.base import file_sha256
from fgvu.extract.encoders.minigpt4_config import (
    BRIDGE_FILE,
    CONFIG_FILE,
    LLM_SUBDIR,
    VARIANTS,
    MiniGPT4Config,
    MiniGPT4Error,
    QFormerSpec,
    VisionTowerSpec,
)
from fgvu.extract.encoders.minigpt4_model import build_vision_bridge

OFFICIAL_VISION = VisionTowerSpec()  # EVA ViT-g/14 without its last layer
OFFICIAL_QFORMER = QFormerSpec()  # BERT-base Q-Former, 32 queries


class ConversionError(MiniGPT4Error):
    """The official files do not fit the MiniGPT-4 architecture (missing, unexpected or misshapen keys)."""


# Our parameter name -> the official one(s). `\1`... refer to the groups of the pattern.
_LOCAL_TO_OFFICIAL: tuple[tuple[str, str], ...] = (
    (r"vision_model\.embeddings\.class_embedding", "visual_encoder.cls_token"),
    (r"vision_model\.embeddings\.position_embedding", "visual_encoder.pos_embed"),
    (r"vision_model\.embeddings\.patch_embedding\.(weight|bias)", r"visual_encoder.patch_embed.proj.\1"),
    (r"vision_model\.encoder\.layers\.(\d+)\.layer_norm1\.(.+)", r"visual_encoder.blocks.\1.norm1.\2"),
    (r"vision_model\.encoder\.layers\.(\d+)\.layer_norm2\.(.+)", r"visual_encoder.blocks.\1.norm2.\2"),
    (r"vision_model\.encoder\.layers\.(\d+)\.self_attn\.qkv\.weight", r"visual_encoder.blocks.\1.attn.qkv.weight"),
    (r"vision_model\.encoder\.layers\.(\d+)\.self_attn\.projection\.(.+)", r"visual_encoder.blocks.\1.attn.proj.\2"),
    (r"vision_model\.encoder\.layers\.(\d+)\.mlp\.(fc1|fc2)\.(.+)", r"visual_encoder.blocks.\1.mlp.\2.\3"),
    (r"vision_model\.post_layernorm\.(.+)", r"ln_vision.\1"),
    (r"query_tokens", "query_tokens"),
    (r"qformer\.layernorm\.(.+)", r"Qformer.bert.embeddings.LayerNorm.\1"),
    (
        r"qformer\.encoder\.layer\.(\d+)\.(attention|crossattention)\.attention\.(query|key|value)\.(.+)",
        r"Qformer.bert.encoder.layer.\1.\2.self.\3.\4",
    ),
    (r"qformer\.encoder\.layer\.(\d+)\.(.+)", r"Qformer.bert.encoder.layer.\1.\2"),
    (r"llama_proj\.(weight|bias)", r"llama_proj.\1"),
)
# EVA keeps separate q and v biases (k has none); transformers stores one fused qkv bias.
_QKV_BIAS = re.compile(r"vision_model\.encoder\.layers\.(\d+)\.self_attn\.qkv\.bias")

# Official keys that MiniGPT-4 does not use, with the reason (reported, never an error).
_UNUSED: tuple[tuple[str, str], ...] = (
    (r"visual_encoder\.(norm|fc_norm|head)\.", "EVA-CLIP's own head, unused by BLIP-2"),
    (r"Qformer\.cls\.", "the Q-Former's language-modelling head"),
    (r"Qformer\.bert\.embeddings\.(word_embeddings|position_embeddings|position_ids)", "the Q-Former's text input"),
    (r"Qformer\.bert\.encoder\.layer\.\d+\.(intermediate|output)\.", "the Q-Former's text feed-forward branch"),
    (r"(t5_proj|opt_proj|vision_proj|text_proj|itm_head)\.|temp$", "BLIP-2's own LLM projection and losses"),
)
_EVA_BLOCK = re.compile(r"visual_encoder\.blocks\.(\d+)\.")


def official_keys_for(local_key: str) -> tuple[str, ...]:
    """The official key(s) a parameter of our model is made from."""
    if m := _QKV_BIAS.fullmatch(local_key):
        return (f"visual_encoder.blocks.{m[1]}.attn.q_bias", f"visual_encoder.blocks.{m[1]}.attn.v_bias")
    for pattern, replacement in _LOCAL_TO_OFFICIAL:
        if re.fullmatch(pattern, local_key):
            return (re.sub(pattern, replacement, local_key),)
    raise ConversionError(f"no official counterpart known for parameter {local_key!r}")


def unused_reason(official_key: str, vision_layers: int) -> str | None:
    """Why MiniGPT-4 ignores an official key, or None when it should have been used."""
    if (m := _EVA_BLOCK.match(official_key)) and int(m[1]) >= vision_layers:
        return "EVA-CLIP layers after the second-last (BLIP-2 removes the last layer)"
    for pattern, reason in _UNUSED:
        if re.match(pattern, official_key):
            return reason
    return None


def _combine(local_key: str, tensors: list):
    """Official tensor(s) -> our tensor (fuses EVA's q/v biases with a zero k bias)."""
    import torch

    if _QKV_BIAS.fullmatch(local_key):
        q_bias, v_bias = tensors
        return torch.cat([q_bias, torch.zeros_like(q_bias), v_bias])
    return tensors[0]


def load_official_state(path: str | Path, what: str) -> dict:
    """A `.pth` state dict (bare, or under "model"), loaded with `weights_only=True`."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{what}: no such file {path}")
    try:
        try:  # memory-mapped: the 2 GB EVA file is not read into RAM twice
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            data = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except Exception as e:  # a zip that is not a checkpoint, a pickle with non-tensor objects, ...
        raise ConversionError(f"{path}: cannot be read as a {what} checkpoint with weights_only=True ({e})") from e
    state = data.get("model", data) if isinstance(data, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConversionError(f"{path}: expected a state dict of tensors (bare or under 'model') for the {what}")
    return state


def merge_official(files: list[tuple[Path, dict]]) -> tuple[dict, dict]:
    """Merge state dicts in the official loading order (later files override). Returns (state, key -> file)."""
    merged: dict = {}
    origin: dict = {}
    for path, state in files:
        for key, tensor in state.items():
            merged[key] = tensor
            origin[key] = path
    return merged, origin


def _listing(names: list[str], limit: int = 20) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def map_state(
    merged: dict,
    origin: dict,
    expected: dict,
    vision_layers: int,
    optional_defaults: dict[str, Callable[[], object]],
    home: Callable[[str], Path],
    prefixes: dict[Path, str],
) -> tuple[dict, dict[str, int]]:
    """Official state -> our state dict, checking names and shapes against `expected` (name -> shape).

    Returns the mapped tensors and a count of ignored official keys by reason. `optional_defaults`
    gives a value for parameters the official model leaves at their initial value. Errors name
    keys as they appear in their file: `home` says which file a key should come from, `prefixes`
    what the official model puts before that file's keys.
    """
    mapped: dict = {}
    missing: list[str] = []
    consumed: set[str] = set()
    for local_key in expected:
        sources = official_keys_for(local_key)
        consumed.update(k for k in sources if k in merged)  # a half-present pair is missing, not unexpected
        absent = [k for k in sources if k not in merged]
        if absent:
            if local_key in optional_defaults:
                mapped[local_key] = optional_defaults[local_key]()
                continue
            missing += absent
            continue
        mapped[local_key] = _combine(local_key, [merged[k] for k in sources])
    ignored: dict[str, int] = {}
    unexpected: list[str] = []
    for key in merged:
        if key in consumed:
            continue
        reason = unused_reason(key, vision_layers)
        if reason is None:
            unexpected.append(f"{key.removeprefix(prefixes[origin[key]])} (from {origin[key].name})")
        else:
            ignored[reason] = ignored.get(reason, 0) + 1
    problems = []
    for path in dict.fromkeys(home(k) for k in missing):
        names = [k.removeprefix(prefixes[path]) for k in missing if home(k) == path]
        problems.append(f"missing keys in {path.name}: {_listing(names)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    misshapen = [
        f"{k}: file {tuple(v.shape)}, model {tuple(expected[k])}"
        for k, v in mapped.items()
        if tuple(v.shape) != tuple(expected[k])
    ]
    if misshapen:
        problems.append(f"shape mismatches: {_listing(misshapen)}")
    if problems:
        raise ConversionError("MiniGPT-4 conversion failed; " + "; ".join(problems))
    return mapped, ignored


_TOKENIZER_FILES = (
    "tokenizer.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
)


def copy_llm(llm_dir: Path, out: Path) -> None:
    """The LLM into `out`: safetensors weights are copied; other weights are re-saved as safetensors."""
    if not (llm_dir / "config.json").is_file():
        raise ConversionError(f"{llm_dir}: not a transformers model directory (no config.json)")
    if not any((llm_dir / name).is_file() for name in ("tokenizer.model", "tokenizer.json")):
        raise ConversionError(f"{llm_dir}: no tokenizer (tokenizer.model or tokenizer.json)")
    out.mkdir(parents=True, exist_ok=True)
    weights = sorted(llm_dir.glob("*.safetensors"))
    if weights:
        files = [*weights, *llm_dir.glob("*.safetensors.index.json"), llm_dir / "config.json"]
        if (llm_dir / "generation_config.json").is_file():
            files.append(llm_dir / "generation_config.json")
        for f in tqdm(files, desc="copy LLM", unit="file"):
            shutil.copy2(f, out / f.name)
    else:
        # Older checkpoints (e.g. Vicuna v0 from FastChat's apply_delta) ship pytorch_model*.bin.
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(llm_dir, dtype="auto")
        model.save_pretrained(out)
    for name in _TOKENIZER_FILES:
        if (llm_dir / name).is_file():
            shutil.copy2(llm_dir / name, out / name)


def convert_minigpt4(
    eva_vit: str | Path,
    qformer: str | Path | None,
    minigpt4_ckpt: str | Path,
    llm_dir: str | Path,
    out_dir: str | Path,
    variant: str = "vicuna0",
    vision: VisionTowerSpec = OFFICIAL_VISION,
    qformer_spec: QFormerSpec = OFFICIAL_QFORMER,
) -> Path:
    """Convert the official files into `out_dir` and return it.

    `qformer` is required for the Vicuna v0 variant and must be None for Llama-2 (which has no
    Q-Former; its ln_vision keeps the initial weights, as in the official model). `vision` and
    `qformer_spec` default to the official EVA-g / BERT-base shapes; tests pass tiny ones.
    """
    import torch
    from safetensors.torch import save_file

    if variant not in VARIANTS:
        raise ConversionError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    if variant == "vicuna0" and qformer is None:
        raise ConversionError("the vicuna0 variant needs the BLIP-2 Q-Former checkpoint (--qformer)")
    if variant == "llama2" and qformer is not None:
        raise ConversionError("the llama2 variant has no Q-Former; do not pass a Q-Former checkpoint")
    llm_dir, out = Path(llm_dir), Path(out_dir)
    llm_config_path = llm_dir / "config.json"
    if not llm_config_path.is_file():
        raise ConversionError(f"{llm_dir}: not a transformers model directory (no config.json)")
    llm_hidden = json.loads(llm_config_path.read_text()).get("hidden_size")
    if not isinstance(llm_hidden, int):
        raise ConversionError(f"{llm_config_path}: no integer hidden_size")

    config = MiniGPT4Config(
        variant=variant,
        vision=vision,
        qformer=qformer_spec if variant == "vicuna0" else None,
        llm_hidden_size=llm_hidden,
    )
    # (file, what it is, prefix of its keys in the official model), in the official loading order
    sources = [(Path(eva_vit), "EVA ViT-g", "visual_encoder.")]
    if qformer is not None:
        sources.append((Path(qformer), "BLIP-2 Q-Former", ""))
    sources.append((Path(minigpt4_ckpt), "MiniGPT-4 projection", ""))
    loaded = [
        (path, {prefix + k: v for k, v in load_official_state(path, what).items()})
        for path, what, prefix in tqdm(sources, desc="read checkpoints", unit="file")
    ]
    merged, origin = merge_official(loaded)

    with torch.device("meta"):
        bridge = build_vision_bridge(config)
    expected = {k: tuple(v.shape) for k, v in bridge.state_dict().items()}
    ln_vision_init = {
        "vision_model.post_layernorm.weight": lambda: torch.ones(vision.hidden_size),
        "vision_model.post_layernorm.bias": lambda: torch.zeros(vision.hidden_size),
    }

    def home(official_key: str) -> Path:
        if official_key.startswith("visual_encoder."):
            return Path(eva_vit)
        return Path(minigpt4_ckpt) if official_key.startswith("llama_proj.") else Path(qformer or minigpt4_ckpt)

    mapped, ignored = map_state(
        merged,
        origin,
        expected,
        vision.num_layers,
        ln_vision_init if variant == "llama2" else {},
        home,
        {path: prefix for path, _, prefix in sources},
    )

    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in mapped.items()}, str(out / BRIDGE_FILE), metadata={"format": "pt"})
    copy_llm(llm_dir, out / LLM_SUBDIR)
    written = [out / BRIDGE_FILE, *sorted(p for p in (out / LLM_SUBDIR).iterdir() if p.is_file())]
    checksums = {str(p.relative_to(out)): file_sha256(p) for p in tqdm(written, desc="sha256", unit="file")}
    (out / CONFIG_FILE).write_text(json.dumps(dataclasses.replace(config, checksums=checksums).to_json(), indent=2))
    for reason, count in ignored.items():
        tqdm.write(f"ignored {count} official keys: {reason}")
    return out
