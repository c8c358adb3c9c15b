"""Small models built here from a config, with a tokenizer trained on the task's own text, so
that everything runs offline. Saved as ordinary Hugging Face folders: `from_pretrained` (and so
`hir.models.load_policy`) reads them back like any Hub model.

The tokenizer is byte-level BPE: any text round-trips exactly and nothing is ever unknown, while
words seen in the task text become single tokens (pure byte-level input is 4-5x longer).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
)
from transformers.utils import logging as hf_logging

from hir.errors import HIRError
from hir.tasks.base import Task

ARCHITECTURES = ("gpt2", "t5")
# width, layers, heads, feed-forward width
SIZES = {
    "tiny": (64, 2, 4, 256),
    "small": (128, 4, 4, 512),
    "base": (256, 6, 8, 1024),
}
SPECIAL_TOKENS = {"pad_token": "<pad>", "eos_token": "</s>", "bos_token": "<s>"}


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2000) -> PreTrainedTokenizerFast:
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, **SPECIAL_TOKENS)


def task_corpus(task: Task) -> list[str]:
    """The text a task's model will read and write: training prompts under both instructions,
    and training targets. Test queries stay out, so the vocabulary learns nothing from them."""
    texts = []
    for example in task.split("train"):
        texts.append(task.prompt(example.query, task.correct_instruction))
        texts.append(task.prompt(example.query, task.wrong_instruction))
        texts.append(" " + example.target)
    return texts


def build_model(arch: str, tokenizer, size: str = "tiny", seed: int = 0):
    if arch not in ARCHITECTURES:
        raise HIRError(f"unknown architecture {arch!r}: choose one of {', '.join(ARCHITECTURES)}")
    if size not in SIZES:
        raise HIRError(f"unknown size {size!r}: choose one of {', '.join(SIZES)}")
    width, layers, heads, ff = SIZES[size]
    ids = {
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "bos_token_id": tokenizer.bos_token_id,
    }
    torch.manual_seed(seed)
    if arch == "t5":
        config = T5Config(
            vocab_size=len(tokenizer), d_model=width, d_kv=width // heads, d_ff=ff,
            num_layers=layers, num_heads=heads, dropout_rate=0.0,
            decoder_start_token_id=tokenizer.pad_token_id, **ids,
        )  # fmt: skip
        return T5ForConditionalGeneration(config)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_embd=width, n_layer=layers, n_head=heads, n_inner=ff,
        n_positions=1024, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **ids,
    )  # fmt: skip
    return GPT2LMHeadModel(config)


def build_small_model(
    arch: str,
    texts: Iterable[str],
    output_dir: str | os.PathLike,
    size: str = "tiny",
    vocab_size: int = 2000,
    seed: int = 0,
) -> str:
    """Train a tokenizer on `texts`, build an untrained `arch` model of `size`, save both to
    `output_dir` and return its path."""
    hf_logging.disable_progress_bar()
    tokenizer = train_tokenizer(texts, vocab_size)
    model = build_model(arch, tokenizer, size, seed)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return str(output_dir)
