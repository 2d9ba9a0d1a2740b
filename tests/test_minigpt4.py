"""MiniGPT-4 captioner: official-layout files -> converter -> loader -> captions, on a tiny model.

The test writes tiny checkpoints under the official key names (EVA-CLIP `blocks.N.attn.q_bias`,
LAVIS `Qformer.bert.encoder.layer.N.crossattention.self.key`, MiniGPT-4 `llama_proj`), and checks
the converted model against a direct re-implementation of the official `encode_img` that reads
those same state dicts.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fgvu.extract.encoders.base import EncoderError
from fgvu.extract.encoders.minigpt4 import MiniGPT4Captioner
from fgvu.extract.encoders.minigpt4_config import MiniGPT4Error, QFormerSpec, VisionTowerSpec
from fgvu.extract.encoders.minigpt4_conversation import IMAGE_PLACEHOLDER, TEMPLATES
from fgvu.extract.encoders.minigpt4_loading import load_minigpt4
from fgvu.extract.encoders.minigpt4_convert import ConversionError, convert_minigpt4
from fgvu.extract.encoders.tiny_llama_tokenizer import write_tiny_llama_tokenizer

VISION = VisionTowerSpec(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, patch_size=14, image_size=56)
QFORMER = QFormerSpec(hidden_size=24, num_layers=3, num_heads=2, intermediate_size=48, num_query_tokens=4)
LLM_HIDDEN = 32
EVA_BLOCKS_IN_FILE = VISION.num_layers + 1  # EVA-CLIP's last layer is in the file; BLIP-2 drops it

SYSTEM = (
    "Give the following image: <Img>ImageContent</Img>. "
    "You will be able to see the image once I provide it to you. Please answer my questions."
)


# ---------------------------------------------------------------------------------------------
# Official-layout tiny checkpoints


def _rand(gen: torch.Generator, *shape: int, scale: float = 0.2) -> torch.Tensor:
    return torch.randn(*shape, generator=gen) * scale


def _norm(gen: torch.Generator, prefix: str, dim: int) -> dict:
    return {f"{prefix}.weight": 1 + _rand(gen, dim, scale=0.1), f"{prefix}.bias": _rand(gen, dim, scale=0.1)}


def _linear(gen: torch.Generator, prefix: str, out_dim: int, in_dim: int) -> dict:
    return {
        f"{prefix}.weight": _rand(gen, out_dim, in_dim, scale=1 / math.sqrt(in_dim)),
        f"{prefix}.bias": _rand(gen, out_dim, scale=0.05),
    }


def official_eva(gen: torch.Generator) -> dict:
    d, n = VISION.hidden_size, VISION.num_patches
    sd = {
        "cls_token": _rand(gen, 1, 1, d),
        "pos_embed": _rand(gen, 1, n + 1, d),
        **_linear(gen, "patch_embed.proj", d, 3 * 14 * 14),
    }
    sd["patch_embed.proj.weight"] = sd["patch_embed.proj.weight"].reshape(d, 3, 14, 14)
    for i in range(EVA_BLOCKS_IN_FILE):
        p = f"blocks.{i}"
        sd |= _norm(gen, f"{p}.norm1", d) | _norm(gen, f"{p}.norm2", d)
        sd[f"{p}.attn.qkv.weight"] = _rand(gen, 3 * d, d, scale=1 / math.sqrt(d))
        sd[f"{p}.attn.q_bias"] = _rand(gen, d)
        sd[f"{p}.attn.v_bias"] = _rand(gen, d)
        sd |= _linear(gen, f"{p}.attn.proj", d, d)
        sd |= _linear(gen, f"{p}.mlp.fc1", VISION.intermediate_size, d)
        sd |= _linear(gen, f"{p}.mlp.fc2", d, VISION.intermediate_size)
    return sd


def official_qformer(gen: torch.Generator) -> dict:
    h, inter = QFORMER.hidden_size, QFORMER.intermediate_size
    sd = _norm(gen, "ln_vision", VISION.hidden_size) | _norm(gen, "Qformer.bert.embeddings.LayerNorm", h)
    sd["query_tokens"] = _rand(gen, 1, QFORMER.num_query_tokens, h, scale=1.0)
    sd["Qformer.bert.embeddings.position_ids"] = torch.arange(16)[None]  # a buffer the checkpoint carries
    for i in range(QFORMER.num_layers):
        p = f"Qformer.bert.encoder.layer.{i}"
        blocks = [("attention", h)] + ([("crossattention", VISION.hidden_size)] if i % 2 == 0 else [])
        for name, kv_dim in blocks:
            sd |= _linear(gen, f"{p}.{name}.self.query", h, h)
            sd |= _linear(gen, f"{p}.{name}.self.key", h, kv_dim)
            sd |= _linear(gen, f"{p}.{name}.self.value", h, kv_dim)
            sd |= _linear(gen, f"{p}.{name}.output.dense", h, h) | _norm(gen, f"{p}.{name}.output.LayerNorm", h)
        sd |= _linear(gen, f"{p}.intermediate_query.dense", inter, h)
        sd |= _linear(gen, f"{p}.output_query.dense", h, inter) | _norm(gen, f"{p}.output_query.LayerNorm", h)
        sd |= _linear(gen, f"{p}.intermediate.dense", inter, h)  # text branch: unused by MiniGPT-4
    sd |= _linear(gen, "t5_proj", 16, h)  # BLIP-2's own projection: unused by MiniGPT-4
    return sd


def projection_in(variant: str) -> int:
    return QFORMER.hidden_size if variant == "vicuna0" else 4 * VISION.hidden_size


def train_tokenizer(directory: Path) -> int:
    """A tiny sentencepiece Llama tokenizer, saved as transformers reads it. Returns its vocab size."""
    corpus = [
        SYSTEM,
        "###Human: <Img></Img> describe the face###Assistant: a calm person smiling",
        "<s>[INST] what are the people doing? is it violent? [/INST] two people walk",
    ] * 30
    return write_tiny_llama_tokenizer(directory, corpus, vocab_size=160)


def write_llm(directory: Path, seed: int) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    directory.mkdir(parents=True)
    vocab = train_tokenizer(directory)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=LLM_HIDDEN,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
        initializer_range=0.3,
    )  # large weights: the text depends on the inputs
    LlamaForCausalLM(config).save_pretrained(directory)


def write_official_files(root: Path, variant: str) -> dict:
    """Tiny official-layout files for `variant`; returns their paths and state dicts."""
    gen = torch.Generator().manual_seed(7)
    files = {
        "eva": root / "eva_vit_g.pth",
        "qformer": None,
        "ckpt": root / "pretrained_minigpt4.pth",
        "llm": root / "llm",
    }
    states = {"eva": official_eva(gen), "ckpt": _linear(gen, "llama_proj", LLM_HIDDEN, projection_in(variant))}
    torch.save(states["eva"], files["eva"])
    if variant == "vicuna0":
        files["qformer"] = root / "blip2_pretrained_flant5xxl.pth"
        states["qformer"] = official_qformer(gen)
        torch.save({"model": states["qformer"]}, files["qformer"])
    torch.save({"model": states["ckpt"]}, files["ckpt"])
    write_llm(files["llm"], seed=3)
    return {"files": files, "states": states}


def convert(official: dict, out: Path, variant: str) -> Path:
    f = official["files"]
    return convert_minigpt4(
        f["eva"], f["qformer"], f["ckpt"], f["llm"], out, variant=variant, vision=VISION, qformer_spec=QFORMER
    )


@pytest.fixture(scope="module", params=["vicuna0", "llama2"])
def converted(request, tmp_path_factory):
    variant = request.param
    root = tmp_path_factory.mktemp(variant)
    official = write_official_files(root, variant)
    out = convert(official, root / "converted", variant)
    return {"variant": variant, "dir": out, "model": load_minigpt4(out, device="cpu"), **official}


# ---------------------------------------------------------------------------------------------
# The official encode_img, re-implemented directly on the official state dicts


def _layer_norm(x, sd, prefix, eps):
    return F.layer_norm(x, x.shape[-1:], sd[f"{prefix}.weight"], sd[f"{prefix}.bias"], eps)


def _attention(q, k, v, heads):
    b, nq, d = q.shape
    split = lambda t: t.reshape(b, t.shape[1], heads, d // heads).transpose(1, 2)  # noqa: E731
    weights = (split(q) * (d // heads) ** -0.5) @ split(k).transpose(-1, -2)
    return (weights.softmax(-1) @ split(v)).transpose(1, 2).reshape(b, nq, d)


def reference_encode_img(
    pixels: torch.Tensor, eva: dict, qformer: dict | None, ckpt: dict, variant: str
) -> torch.Tensor:
    x = (
        F.conv2d(pixels, eva["patch_embed.proj.weight"], eva["patch_embed.proj.bias"], stride=14)
        .flatten(2)
        .transpose(1, 2)
    )
    x = torch.cat([eva["cls_token"].expand(len(x), -1, -1), x], dim=1) + eva["pos_embed"]
    for i in range(VISION.num_layers):  # the file's last block is not used
        p = f"blocks.{i}"
        h = _layer_norm(x, eva, f"{p}.norm1", 1e-6)
        bias = torch.cat([eva[f"{p}.attn.q_bias"], torch.zeros_like(eva[f"{p}.attn.q_bias"]), eva[f"{p}.attn.v_bias"]])
        q, k, v = F.linear(h, eva[f"{p}.attn.qkv.weight"], bias).chunk(3, dim=-1)
        x = x + F.linear(
            _attention(q, k, v, VISION.num_heads), eva[f"{p}.attn.proj.weight"], eva[f"{p}.attn.proj.bias"]
        )
        h = F.gelu(
            F.linear(_layer_norm(x, eva, f"{p}.norm2", 1e-6), eva[f"{p}.mlp.fc1.weight"], eva[f"{p}.mlp.fc1.bias"])
        )
        x = x + F.linear(h, eva[f"{p}.mlp.fc2.weight"], eva[f"{p}.mlp.fc2.bias"])
    if variant == "llama2":  # ln_vision keeps its initial weights; CLS dropped; 4 tokens concatenated
        x = F.layer_norm(x, x.shape[-1:], eps=1e-5)[:, 1:]
        features = x.reshape(len(x), x.shape[1] // 4, 4 * x.shape[2])
    else:
        image = _layer_norm(x, qformer, "ln_vision", 1e-5)
        lin = lambda t, name: F.linear(t, qformer[f"{name}.weight"], qformer[f"{name}.bias"])  # noqa: E731
        h = _layer_norm(
            qformer["query_tokens"].expand(len(x), -1, -1), qformer, "Qformer.bert.embeddings.LayerNorm", 1e-12
        )
        for i in range(QFORMER.num_layers):
            p = f"Qformer.bert.encoder.layer.{i}"
            for name, context in [("attention", None)] + ([("crossattention", image)] if i % 2 == 0 else []):
                kv = h if context is None else context
                a = _attention(
                    lin(h, f"{p}.{name}.self.query"),
                    lin(kv, f"{p}.{name}.self.key"),
                    lin(kv, f"{p}.{name}.self.value"),
                    QFORMER.num_heads,
                )
                h = _layer_norm(lin(a, f"{p}.{name}.output.dense") + h, qformer, f"{p}.{name}.output.LayerNorm", 1e-12)
            ff = lin(F.gelu(lin(h, f"{p}.intermediate_query.dense")), f"{p}.output_query.dense")
            h = _layer_norm(ff + h, qformer, f"{p}.output_query.LayerNorm", 1e-12)
        features = h
    return F.linear(features, ckpt["llama_proj.weight"], ckpt["llama_proj.bias"])


def random_images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 40, 50, 3), dtype=np.uint8)


# ---------------------------------------------------------------------------------------------
# Tests


def test_prompt_is_the_official_conversation():
    question = "Describe the facial expression."
    assert TEMPLATES["vicuna0"].render(question) == (
        SYSTEM + "###Human: <Img><ImageHere></Img> Describe the facial expression.###Assistant: "
    )
    assert TEMPLATES["llama2"].render(question) == (
        SYSTEM + "<s>[INST] <Img><ImageHere></Img> Describe the facial expression. [/INST] "
    )


def test_converted_model_matches_official_encode_img(converted):
    model, states = converted["model"], converted["states"]
    pixels = torch.randn(2, 3, VISION.image_size, VISION.image_size, generator=torch.Generator().manual_seed(1))
    ours = model.embed_images(pixels)
    expected = reference_encode_img(pixels, states["eva"], states.get("qformer"), states["ckpt"], converted["variant"])
    n_tokens = QFORMER.num_query_tokens if converted["variant"] == "vicuna0" else VISION.num_patches // 4
    assert ours.shape == (2, n_tokens, LLM_HIDDEN)
    torch.testing.assert_close(ours, expected, atol=2e-5, rtol=1e-4)


def test_prompt_method_and_context_rows(converted):
    model = converted["model"]
    prompt = model.prompt("what is happening?")
    assert prompt == TEMPLATES[converted["variant"]].render("what is happening?")
    pixels = model.preprocess(random_images(2))
    context = model.context_embeddings(pixels, prompt)
    before, after = prompt.split(IMAGE_PLACEHOLDER)
    tok = model.tokenizer
    ids_before = tok(before, add_special_tokens=True).input_ids
    ids_after = tok(after, add_special_tokens=False).input_ids
    assert ids_before[0] == tok.bos_token_id and tok.bos_token_id not in ids_after  # BOS on the first segment only
    embed = model.llm.get_input_embeddings()
    image = model.embed_images(pixels)
    n0, n_img = len(ids_before), image.shape[1]
    assert context.shape == (2, n0 + n_img + len(ids_after), LLM_HIDDEN)
    for b in range(2):
        torch.testing.assert_close(context[b, :n0], embed(torch.tensor(ids_before)))
        torch.testing.assert_close(context[b, n0 : n0 + n_img], image[b])
        torch.testing.assert_close(context[b, n0 + n_img :], embed(torch.tensor(ids_after)))


def test_generation_inputs_are_left_padded(converted):
    model = converted["model"]
    pixels = model.preprocess(random_images(2))
    prompts = [model.prompt("hi"), model.prompt("what are the people doing in this image, is it violent?")]
    embeds, mask = model.generation_inputs(pixels, prompts)
    singles = [model.context_embeddings(pixels[i : i + 1], p)[0] for i, p in enumerate(prompts)]
    assert singles[0].shape[0] < singles[1].shape[0] == embeds.shape[1]
    pad = embeds.shape[1] - singles[0].shape[0]
    assert mask[0, :pad].sum() == 0 and mask[0, pad:].all() and mask[1].all()
    assert embeds[0, :pad].abs().sum() == 0
    torch.testing.assert_close(embeds[0, pad:], singles[0])
    torch.testing.assert_close(embeds[1], singles[1])


def test_caption_batch_equals_one_by_one(converted):
    model = converted["model"]
    images = random_images(3, seed=5)
    questions = ["hi", "describe the face", "what are the people doing? is it violent?"]
    batched = model.caption(images, questions, max_new_tokens=8)
    one_by_one = [model.caption(images[i : i + 1], q, max_new_tokens=8)[0] for i, q in enumerate(questions)]
    assert len(batched) == 3 and all(isinstance(c, str) for c in batched)
    assert len(set(batched)) == 3  # the text depends on image and question, so a padding error would show
    assert batched == one_by_one
    same_question = model.caption(images, "describe the face", max_new_tokens=8)
    assert len(set(same_question)) > 1  # the image tokens reach the LLM


def test_caption_beam_and_sampling_settings(converted):
    model = converted["model"]
    images = random_images(2, seed=9)
    assert len(model.caption(images, "describe", max_new_tokens=4, num_beams=2)) == 2
    torch.manual_seed(0)
    assert len(model.caption(images, "describe", max_new_tokens=4, temperature=0.7)) == 2
    with pytest.raises(MiniGPT4Error, match="temperature"):
        model.caption(images, "describe", temperature=0.0)


def test_captioner_interface(converted):
    captioner = MiniGPT4Captioner(converted["dir"], device="cpu", max_new_tokens=5, batch_size=2)
    captions = captioner.caption(random_images(3).astype(np.float32) / 255.0, "describe the face")
    assert len(captions) == 3
    fp = captioner.fingerprint
    assert fp["name"] == "captioner:minigpt4" and fp["variant"] == converted["variant"]
    assert fp["preprocessing"]["generation"]["max_new_tokens"] == 5 and len(fp["checkpoint"]) == 64
    assert fp["preprocessing"]["prompt_format"] == TEMPLATES[converted["variant"]].render("{prompt}")
    with pytest.raises(EncoderError, match=r"\[0, 1\]"):
        captioner.caption(random_images(1).astype(np.float32), "describe")  # 0-255 floats


def test_converter_names_a_missing_key(tmp_path):
    official = write_official_files(tmp_path, "vicuna0")
    state = official["states"]["qformer"]
    del state["Qformer.bert.encoder.layer.2.crossattention.self.key.weight"]
    torch.save({"model": state}, official["files"]["qformer"])
    with pytest.raises(
        ConversionError,
        match=r"missing keys in blip2_pretrained_flant5xxl\.pth: "
        r"Qformer\.bert\.encoder\.layer\.2\.crossattention\.self\.key\.weight",
    ):
        convert(official, tmp_path / "out", "vicuna0")


def test_converter_names_missing_eva_keys_as_in_their_file(tmp_path):
    official = write_official_files(tmp_path, "llama2")
    eva = official["states"]["eva"]
    del eva["blocks.1.attn.v_bias"]
    torch.save(eva, official["files"]["eva"])
    with pytest.raises(ConversionError, match=r"missing keys in eva_vit_g\.pth: blocks\.1\.attn\.v_bias$"):
        convert(official, tmp_path / "out", "llama2")


def test_converter_names_unexpected_and_misshapen_keys(tmp_path):
    official = write_official_files(tmp_path, "llama2")
    ckpt = official["states"]["ckpt"] | {"llama_model.lora_A.weight": torch.zeros(2, 2)}
    ckpt["llama_proj.weight"] = ckpt["llama_proj.weight"][:, :-1]
    torch.save({"model": ckpt}, official["files"]["ckpt"])
    with pytest.raises(ConversionError) as info:
        convert(official, tmp_path / "out", "llama2")
    assert "unexpected keys: llama_model.lora_A.weight (from pretrained_minigpt4.pth)" in str(info.value)
    assert "llama_proj.weight: file (32, 127), model (32, 128)" in str(info.value)


def test_converter_rejects_variant_file_mismatch(tmp_path):
    with pytest.raises(ConversionError, match="needs the BLIP-2 Q-Former"):
        convert_minigpt4(tmp_path / "a", None, tmp_path / "c", tmp_path, tmp_path / "out", variant="vicuna0")
    with pytest.raises(ConversionError, match="no config.json"):
        convert_minigpt4(tmp_path / "a", tmp_path / "b", tmp_path / "c", tmp_path, tmp_path / "out")


def test_full_size_model_is_refused_on_cpu(converted, tmp_path):
    big = tmp_path / "big"
    shutil.copytree(converted["dir"], big)
    llm_config = json.loads((big / "llm" / "config.json").read_text())
    llm_config.update(
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        head_dim=128,
        vocab_size=32000,
    )
    (big / "llm" / "config.json").write_text(json.dumps(llm_config))
    with pytest.raises(MiniGPT4Error, match=r"6\.\dB parameters: on CPU it needs about \d+ GiB"):
        load_minigpt4(big, device="cpu")


def test_not_a_converted_directory(tmp_path):
    with pytest.raises(MiniGPT4Error, match="fgvu convert minigpt4"):
        load_minigpt4(tmp_path, device="cpu")


def test_convert_command(tmp_path, monkeypatch):
    import functools

    import typer
    from typer.testing import CliRunner

    from fgvu.commands.convert import register
    from fgvu.errors import FgvuError
    from fgvu.extract.encoders import minigpt4_convert

    # The command converts the official shapes; here it gets the tiny ones.
    tiny = functools.partial(minigpt4_convert.convert_minigpt4, vision=VISION, qformer_spec=QFORMER)
    monkeypatch.setattr(minigpt4_convert, "convert_minigpt4", tiny)
    app = typer.Typer()
    register(app)
    f = write_official_files(tmp_path, "vicuna0")["files"]
    args = [
        "convert",
        "minigpt4",
        "--eva-vit",
        str(f["eva"]),
        "--qformer",
        str(f["qformer"]),
        "--minigpt4-ckpt",
        str(f["ckpt"]),
        "--llm",
        str(f["llm"]),
        "--out",
        str(tmp_path / "cli"),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "cli" / "minigpt4.json").read_text())["variant"] == "vicuna0"
    result = CliRunner().invoke(app, [*args, "--variant", "llama2"])
    assert isinstance(result.exception, FgvuError) and "has no Q-Former" in str(result.exception)


def test_llm_in_bin_format_is_resaved_as_safetensors(tmp_path):
    from transformers import AutoModelForCausalLM

    from fgvu.extract.encoders.minigpt4_convert import copy_llm

    # Vicuna v0 made with FastChat's apply_delta ships pytorch_model.bin.
    source = tmp_path / "vicuna"
    write_llm(source, seed=4)
    reference = AutoModelForCausalLM.from_pretrained(source)
    (source / "model.safetensors").unlink()
    torch.save(reference.state_dict(), source / "pytorch_model.bin")
    copy_llm(source, tmp_path / "out")
    assert (tmp_path / "out" / "model.safetensors").is_file() and (tmp_path / "out" / "tokenizer.model").is_file()
    copied = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    for (name, a), (_, b) in zip(reference.state_dict().items(), copied.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, msg=name)


def test_answers_are_cut_as_the_official_code_does():
    from fgvu.extract.encoders.minigpt4_conversation import clean_answer

    assert clean_answer(" A calm face, low arousal.###Human: next", "vicuna0") == "A calm face, low arousal."
    assert clean_answer("Assistant: two people fight###", "vicuna0") == "two people fight"
    assert clean_answer("[/INST] two people walk </s>", "llama2") == "two people walk"
