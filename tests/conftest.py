"""Shared fixtures: a BIG-bench-format folder the tests own, and tiny models built from a config.

Nothing here touches the network: tokenizers are trained on task text, models are built from a
config and saved to a temporary folder, and `HF_HUB_OFFLINE` is set for the whole session.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# The public HIR code's loops live with the benchmarks they serve (benchmarks/public_code.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from helpers import write_task


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """A test that pins torch to one thread (so that float sums repeat) does not pin the tests
    after it: the suite's outcome does not depend on their order."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


# The first example of BIG-bench tracking_shuffled_objects/three_objects, verbatim, and two more.
TRACKING_EXAMPLES = [
    {
        "input": "Alice, Bob, and Claire are playing a game. At the start of the game, they are each holding a ball: Alice has a orange ball, Bob has a white ball, and Claire has a blue ball. \n\nAs the game progresses, pairs of players trade balls. First, Alice and Bob swap balls. Then, Bob and Claire swap balls. Finally, Alice and Bob swap balls. At the end of the game, Alice has the ",
        "target_scores": {"orange ball.": 0, "white ball.": 0, "blue ball.": 1},
    },
    {
        "input": "Alice, Bob, and Claire are friends. \n\nAlice and Bob swap. At the end, Bob has the ",
        "target_scores": {"red ball.": 1, "green ball.": 0, "pink ball.": 0},
    },
    {
        "input": "Alice, Bob, and Claire are friends. \n\nBob and Claire swap. At the end, Claire has the ",
        "target_scores": {"red ball.": 0, "green ball.": 1, "pink ball.": 0},
    },
]


@pytest.fixture
def bigbench_dir(tmp_path: Path) -> Path:
    root = tmp_path / "bigbench"
    write_task(
        root,
        "tracking_shuffled_objects/three_objects",
        {"name": "t", "examples": TRACKING_EXAMPLES},
    )
    write_task(
        root,
        "object_counting",
        {
            "prefix": "ignored by the public code",
            "examples": [
                {
                    "input": "I have a cat and two dogs. How many animals do I have?",
                    "target": ["three", "3"],
                },
                {
                    "input": "I have a flute.\n\nHow many instruments do I have?",
                    "target": ["one", "1"],
                },
            ],
        },
    )
    write_task(
        root,
        "word_sorting",
        {
            "task_prefix": "Sort the following words alphabetically:",
            "example_input_prefix": "\nList: ",
            "examples": [{"input": "pear apple", "target": "apple pear"}],
        },
    )
    return root


def _build(tmp_path_factory, arch: str) -> str:
    from hir.models.small_models import build_small_model, task_corpus
    from hir.tasks import load_task

    task = load_task("synthetic/count", num_examples=200)
    folder = tmp_path_factory.mktemp(f"tiny-{arch}")
    return build_small_model(arch, task_corpus(task), folder, size="tiny", vocab_size=400, seed=0)


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory) -> str:
    return _build(tmp_path_factory, "gpt2")


@pytest.fixture(scope="session")
def tiny_t5_dir(tmp_path_factory) -> str:
    return _build(tmp_path_factory, "t5")


@pytest.fixture(params=["gpt2", "t5"])
def tiny_model_dir(request, tiny_gpt2_dir, tiny_t5_dir) -> str:
    return {"gpt2": tiny_gpt2_dir, "t5": tiny_t5_dir}[request.param]


CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="session")
def tiny_llama_chat_dir(tmp_path_factory) -> str:
    """A 2-layer Llama-architecture chat model with a ChatML template, built from a config."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from hir.models.small_models import task_corpus, train_tokenizer
    from hir.tasks import load_task

    task = load_task("synthetic/count", num_examples=200)
    tokenizer = train_tokenizer(task_corpus(task), vocab_size=400)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.chat_template = CHATML
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)  # fmt: skip
    folder = tmp_path_factory.mktemp("tiny-llama-chat")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)
