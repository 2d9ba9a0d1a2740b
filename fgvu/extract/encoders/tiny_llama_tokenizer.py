"""A tiny sentencepiece Llama tokenizer, for the random-weight LLMs of tests and benchmarks."""

from __future__ import annotations

import io
import json
from pathlib import Path


def write_tiny_llama_tokenizer(directory: str | Path, corpus: list[str], vocab_size: int) -> int:
    """Train a small sentencepiece Llama tokenizer on `corpus` and save it in `directory` as transformers reads it.

    For tiny random-weight models (tests, benchmarks): it trains in milliseconds. `vocab_size` is a
    target, not a limit (the corpus may hold fewer pieces). Returns the tokenizer's real vocab size.
    """
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
