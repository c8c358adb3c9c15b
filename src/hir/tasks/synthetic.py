"""Generated tasks that a small model trained on a laptop can learn: unlimited, seeded, and
checked by a verifier that recomputes the answer from the problem (kept in `Example.meta`).

- count:      how many times a word occurs in a short list           -> "3"
- arithmetic: the sum of two numbers                                  -> "68"
- sort:       a few words in alphabetical order                       -> "apple kiwi pear"
- swap:       which ball a player holds after swaps (multiple choice) -> "(B)"
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from hir.tasks.base import Example, Task, normalize_answer
from hir.tasks.extraction import ANSWER_HINTS

WORDS = (
    "apple", "pear", "kiwi", "plum", "lime", "fig", "grape", "peach",
    "cat", "dog", "cow", "fox", "owl", "bee", "hen", "yak",
)  # fmt: skip
PLAYERS = ("Alice", "Bob", "Claire", "Dave", "Eve")
BALLS = ("red", "blue", "green", "white", "black")


def generate_count(
    rng: random.Random, min_length: int = 3, max_length: int = 8
) -> tuple[str, str, dict]:
    word = rng.choice(WORDS)
    length = rng.randint(min_length, max_length)
    others = [w for w in WORDS if w != word]
    occurrences = rng.randint(1, min(5, length))
    items = [word] * occurrences + [rng.choice(others) for _ in range(length - occurrences)]
    rng.shuffle(items)
    query = f"How many times does {word} appear in the list? List: {' '.join(items)}"
    return query, str(occurrences), {"word": word, "items": items}


def verify_count(output: str, example: Example) -> float:
    expected = example.meta["items"].count(example.meta["word"])
    return float(normalize_answer(output) == str(expected))


def generate_arithmetic(rng: random.Random, max_value: int = 50) -> tuple[str, str, dict]:
    a, b = rng.randint(0, max_value), rng.randint(0, max_value)
    return f"What is {a} plus {b}?", str(a + b), {"a": a, "b": b}


def verify_arithmetic(output: str, example: Example) -> float:
    return float(normalize_answer(output) == str(example.meta["a"] + example.meta["b"]))


def generate_sort(
    rng: random.Random, min_words: int = 3, max_words: int = 4
) -> tuple[str, str, dict]:
    words = rng.sample(WORDS, rng.randint(min_words, max_words))
    query = f"Sort the following words alphabetically: {' '.join(words)}"
    return query, " ".join(sorted(words)), {"words": words}


def verify_sort(output: str, example: Example) -> float:
    return float(output.split() == sorted(example.meta["words"]))


def generate_swap(
    rng: random.Random, num_players: int = 3, num_swaps: int = 2
) -> tuple[str, str, dict]:
    players = list(PLAYERS[:num_players])
    balls = rng.sample(BALLS, num_players)
    holding = dict(zip(players, balls))
    swaps = [tuple(rng.sample(players, 2)) for _ in range(num_swaps)]
    for first, second in swaps:
        holding[first], holding[second] = holding[second], holding[first]
    asked = rng.choice(players)
    start = ", ".join(f"{p} has a {b} ball" for p, b in zip(players, balls))
    moves = " ".join(f"{a} and {b} swap balls." for a, b in swaps)
    options = "\n".join(f"({chr(65 + i)}) {b} ball" for i, b in enumerate(balls))
    query = f"{start}. {moves} At the end, {asked} has the\nOptions:\n{options}"
    answer = f"({chr(65 + balls.index(holding[asked]))})"
    meta = {"players": players, "balls": balls, "swaps": swaps, "asked": asked,
            "options": tuple(f"{b} ball" for b in balls)}  # fmt: skip
    return query, answer, meta


def verify_swap(output: str, example: Example) -> float:
    meta = example.meta
    holding = dict(zip(meta["players"], meta["balls"]))
    for first, second in meta["swaps"]:
        holding[first], holding[second] = holding[second], holding[first]
    letter = chr(65 + list(meta["balls"]).index(holding[meta["asked"]]))
    return float(normalize_answer(output) == f"({letter})".lower())


@dataclass(frozen=True)
class SyntheticSpec:
    generate: Callable[..., tuple[str, str, dict]]
    verify: Callable[[str, Example], float]
    description: str
    answer_format: str  # regex of a well-formed answer
    # For chat models (`Task.for_format`): how the answer is taken from a sentence, and the
    # hint after the instruction, as for the BIG-bench tasks of the same kind.
    chat_extraction: str = "none"
    chat_answer_hint: str = ""


SYNTHETIC_TASKS: dict[str, SyntheticSpec] = {
    "count": SyntheticSpec(
        generate_count, verify_count, "count a word's occurrences in a list", r"\d+",
        "number", ANSWER_HINTS["number"],
    ),
    "arithmetic": SyntheticSpec(
        generate_arithmetic, verify_arithmetic, "add two numbers", r"\d+",
        "number", ANSWER_HINTS["number"],
    ),
    "sort": SyntheticSpec(
        generate_sort, verify_sort, "sort 3-4 words alphabetically", r"[a-z]+( [a-z]+)*",
        "first_line", "Answer with the sorted words only, separated by spaces.",
    ),
    "swap": SyntheticSpec(
        generate_swap, verify_swap, "track a ball through swaps (multiple choice)", r"\([A-Z]\)",
        "option", ANSWER_HINTS["option"],
    ),
}  # fmt: skip


def load_synthetic_task(kind: str, num_examples: int = 1000, data_seed: int = 0, **params) -> Task:
    spec = SYNTHETIC_TASKS[kind]
    rng = random.Random(f"{kind}-{data_seed}")
    examples, seen = [], set()
    # Distinct queries only, so that no test query also appears in training.
    for _ in range(num_examples * 20):
        if len(examples) == num_examples:
            break
        query, answer, meta = spec.generate(rng, **params)
        if query not in seen:
            seen.add(query)
            examples.append(Example(f"{kind}-{len(examples)}", query, answer, meta=meta))
    return Task(
        name=f"synthetic/{kind}",
        examples=examples,
        feedback=spec.verify,
        description=f"synthetic: {spec.description} ({len(examples)} examples, data seed {data_seed})",
        answer_format=spec.answer_format,
        chat_extraction=spec.chat_extraction,
        chat_answer_hint=spec.chat_answer_hint,
    )
