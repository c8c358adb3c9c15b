"""Instructions made of verifiable constraints, as IFEval's (docs/method.md, "Constraint
instructions"): requests generated from templates, each with 1-3 constraints drawn from
lm-eval's IFEval registry with random parameters, and hindsight relabeling of an output with
the constraints it satisfies. Every constraint is an lm-eval checker: its description is the
checker's own wording (IFEval's phrasing) and whether an output satisfies it is the checker's
verdict, never a copy of either.

    rng = random.Random(0)
    request = generated_request(rng)                       # "Write a poem about lighthouses."
    constraints = draw_constraints(rng, request, count=2)   # [Constraint(...), Constraint(...)]
    text = instruction_text(request, constraints)          # the request, then the descriptions
    achieved = hindsight_constraints(output, request, constraints, rng)  # what `output` satisfies
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from hir.tasks.ifeval import _checkers

# Request templates and topics for training queries: many kinds of writing, none an IFEval test
# prompt (tests/test_constraints.py checks that no generated request appears in one).
REQUEST_KINDS = (
    "Write a short story about {topic}.", "Write a poem about {topic}.",
    "Write an email to a colleague about {topic}.", "Write a blog post about {topic}.",
    "Explain {topic} to a ten-year-old.", "Write a product description for {topic}.",
    "Write a letter to a local newspaper about {topic}.", "Give practical advice about {topic}.",
    "Write a short speech about {topic}.", "Describe the history of {topic}.",
    "Write a limerick about {topic}.", "Write a dialogue between two friends about {topic}.",
    "List the pros and cons of {topic}.", "Write a diary entry about {topic}.",
    "Write a movie plot summary involving {topic}.", "Write a travel guide entry about {topic}.",
    "Write a job advertisement related to {topic}.", "Write a review of a book about {topic}.",
    "Write a riddle about {topic}.", "Write an encyclopedia-style paragraph about {topic}.",
)  # fmt: skip
TOPICS = (
    "lighthouses", "beekeeping", "the first day at a new school", "a rainy weekend", "composting",
    "learning to play the cello", "a mountain village", "electric bicycles", "tea ceremonies",
    "a lost umbrella", "urban gardening", "the night sky", "a forgotten library",
    "morning routines", "sailing", "a robot that collects stamps", "river otters",
    "saving money as a student", "a bakery at dawn", "board games", "volunteering",
    "desert plants", "an old typewriter", "public libraries", "a train journey",
    "winter camping", "homemade bread", "the life of a glacier", "street musicians",
    "a city without cars", "learning a second language", "paper airplanes", "coral reefs",
    "a friendly dragon", "recycling old phones", "a village festival", "jazz clubs",
    "the smell of pine forests", "a chess tournament", "kites",
)  # fmt: skip
# What training draws from: every registry type whose parameters can be drawn at random, except
# the response language (its checker detects the language, which the base models here rarely
# write) and the two that constrain the whole response's shape (constrained_response, json).
EXCLUDED = frozenset({"language:response_language", "detectable_format:constrained_response",
                      "detectable_format:json_format"})  # fmt: skip


@dataclass(frozen=True)
class Constraint:
    """One verifiable instruction: an lm-eval registry id and its parameters."""

    instruction_id: str
    kwargs: dict = field(default_factory=dict, hash=False, compare=False)
    key: str = field(default="", repr=False)  # a canonical form, for equality

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", f"{self.instruction_id} {json.dumps(self.kwargs, sort_keys=True)}")  # fmt: skip


def _registry():
    _checkers()  # first: the sentence splitter in place (lm-eval downloads one on import if not)
    from lm_eval.tasks.ifeval import instructions_registry

    return instructions_registry


@contextmanager
def _seeded(rng: random.Random) -> Iterator[None]:
    """lm-eval's checkers draw their parameters from Python's `random`: seed it from `rng`
    for the block, and give the caller's state back."""
    state = random.getstate()
    random.seed(rng.getrandbits(32))
    try:
        yield
    finally:
        random.setstate(state)


def _built(constraint: Constraint, request: str):
    """(checker, description) of `constraint`, its parameters as given (and the request, for
    the one that repeats it)."""
    checker = _registry().INSTRUCTION_DICT[constraint.instruction_id](constraint.instruction_id)
    arguments = {k: v for k, v in constraint.kwargs.items() if v is not None}
    if constraint.instruction_id == "combination:repeat_prompt":
        arguments["prompt_to_repeat"] = request
    with _seeded(random.Random(0)):  # (a non-letter letter is replaced at random, as in scoring)
        description = checker.build_description(**arguments)
    return checker, description


def describe(constraint: Constraint, request: str) -> str:
    """The constraint in IFEval's words (the checker's own description)."""
    return _built(constraint, request)[1]


def satisfies(output: str, constraint: Constraint, request: str) -> bool:
    """Whether `output` satisfies `constraint` (the checker's strict verdict, as IFEval's)."""
    checker, _ = _built(constraint, request)
    with _seeded(random.Random(0)):
        return bool(output.strip()) and bool(checker.check_following(output))


def instruction_text(request: str, constraints: Sequence[Constraint]) -> str:
    """The request followed by each constraint's description, as an IFEval prompt reads."""
    return " ".join([request, *(describe(c, request) for c in constraints)])


def generated_request(rng: random.Random) -> str:
    return rng.choice(REQUEST_KINDS).format(topic=rng.choice(TOPICS))


def draw_constraints(rng: random.Random, request: str, count: int) -> list[Constraint]:
    """`count` constraints of distinct, non-conflicting registry types, their parameters drawn
    at random by the checkers themselves (seeded from `rng`)."""
    registry = _registry()
    chosen: list[Constraint] = []
    kinds = sorted(set(registry.INSTRUCTION_DICT) - EXCLUDED)
    rng.shuffle(kinds)
    for kind in kinds:
        if len(chosen) == count:
            break
        if any(_conflict(kind, c.instruction_id, registry) for c in chosen):
            continue
        checker = registry.INSTRUCTION_DICT[kind](kind)
        with _seeded(rng):
            checker.build_description(**({"prompt_to_repeat": request} if kind == "combination:repeat_prompt" else {}))  # fmt: skip
        chosen.append(Constraint(kind, dict(checker.get_instruction_args() or {})))
    return chosen


def _conflict(a: str, b: str, registry) -> bool:
    conflicts = registry.INSTRUCTION_CONFLICTS
    return b in conflicts.get(a, {a}) or a in conflicts.get(b, {b})


def achieved_constraints(output: str, request: str) -> list[Constraint]:
    """Constraints that describe what `output` is, each kept only if its checker agrees: its
    case, its commas, its length in words and sentences, its paragraphs, its ending, its
    title, postscript, bullets, highlights and placeholders, and two of its words."""
    util = _util()
    text = output.strip()
    words = util.count_words(text)
    candidates = [
        Constraint("change_case:english_lowercase"),
        Constraint("change_case:english_capital"),
        Constraint("punctuation:no_comma"),
        Constraint("startend:quotation"),
        Constraint("detectable_format:title"),
    ]
    if words:
        at_least = max(words // 10 * 10, 1)
        candidates.append(Constraint("length_constraints:number_words", {"num_words": at_least, "relation": "at least"}))  # fmt: skip
        candidates.append(Constraint("length_constraints:number_words", {"num_words": words + 10 - words % 10, "relation": "less than"}))  # fmt: skip
    sentences = util.count_sentences(text) if text else 0
    if sentences:
        candidates.append(Constraint("length_constraints:number_sentences", {"num_sentences": sentences, "relation": "at least"}))  # fmt: skip
    paragraphs = len(re.split(r"\s?\*\*\*\s?", text))
    if paragraphs > 1:
        candidates.append(Constraint("length_constraints:number_paragraphs", {"num_paragraphs": paragraphs}))  # fmt: skip
    tail = text.rstrip('"').split()[-3:]
    if tail:
        candidates.append(Constraint("startend:end_checker", {"end_phrase": " ".join(tail)}))
    for marker in ("P.P.S", "P.S."):
        if marker in text:
            candidates.append(Constraint("detectable_content:postscript", {"postscript_marker": marker}))  # fmt: skip
            break
    bullets = len(re.findall(r"^\s*\*[^\*].*$", text, flags=re.MULTILINE)) + len(re.findall(r"^\s*-.*$", text, flags=re.MULTILINE))  # fmt: skip
    if bullets:
        candidates.append(Constraint("detectable_format:number_bullet_lists", {"num_bullets": bullets}))  # fmt: skip
    highlights = len(re.findall(r"\*[^\n\*]+\*", text)) + len(re.findall(r"\*\*[^\n\*]+\*\*", text))
    if highlights:
        candidates.append(Constraint("detectable_format:number_highlighted_sections", {"num_highlights": highlights}))  # fmt: skip
    placeholders = len(re.findall(r"\[.*?\]", text))
    if placeholders:
        candidates.append(Constraint("detectable_content:number_placeholders", {"num_placeholders": placeholders}))  # fmt: skip
    content_words = sorted({w.lower() for w in re.findall(r"[A-Za-z]{6,}", text)})
    if content_words:
        candidates.append(Constraint("keywords:existence", {"keywords": content_words[:2]}))
    return [c for c in candidates if satisfies(output, c, request)]


def _util():
    _checkers()  # first, as in _registry
    from lm_eval.tasks.ifeval import instructions_util

    return instructions_util


def hindsight_constraints(
    output: str, request: str, own: Sequence[Constraint], rng: random.Random
) -> list[Constraint]:
    """The constraints to relabel `output` with: those of its own (`own`, the ones it was
    sampled under) that it satisfies, then constraints it achieved (`achieved_constraints`),
    drawn at random without a conflict, up to as many as it was asked for (at least one).
    Every one is satisfied by `output`; an output that satisfies all its own keeps them."""
    registry = _registry()
    kept = [c for c in own if satisfies(output, c, request)]
    wanted = max(len(own), 1)
    extra = [c for c in achieved_constraints(output, request) if c.key not in {k.key for k in kept}]
    rng.shuffle(extra)
    for candidate in extra:
        if len(kept) >= wanted:
            break
        if not any(_conflict(candidate.instruction_id, c.instruction_id, registry) for c in kept):
            kept.append(candidate)
    return kept


# The wrong-answer form of a constraint instruction (HIR's binary relabel and pairwise contrast).
WRONG_TEMPLATE = "Answer without following these instructions: {instruction}"


def load_constraints_task(num_examples: int = 1000, data_seed: int = 0):
    """Training queries for IFEval-style instruction following, none of them IFEval's: each a
    generated request (`generated_request`) with 1-3 constraints (`draw_constraints`), its
    instruction the constraints' descriptions; the feedback is the share of its constraints an
    output follows (lm-eval's checkers), the whole output scored."""
    from types import MappingProxyType

    from hir.tasks.base import Task
    from hir.tasks.example import Example
    from hir.tasks.ifeval import followed_share, ifeval_metrics

    rng = random.Random(data_seed)
    examples = []
    for number in range(num_examples):
        request = generated_request(rng)
        constraints = draw_constraints(rng, request, count=rng.randint(1, 3))
        meta = {"key": number, "instruction_id_list": tuple(c.instruction_id for c in constraints),
                "kwargs": tuple(MappingProxyType(dict(c.kwargs)) for c in constraints)}  # fmt: skip
        examples.append(Example(
            id=f"constraints-{number}", query=request, target="", meta=MappingProxyType(meta),
            instruction=" ".join(describe(c, request) for c in constraints),
        ))  # fmt: skip
    return Task(
        name="constraints", examples=examples, feedback=followed_share,
        prompt_template="{query} {instruction}", correct_instruction="",
        wrong_instruction=WRONG_TEMPLATE, metrics=ifeval_metrics, extraction="none",
        chat_extraction="none", answer_hint="", chat_answer_hint="",
        description="generated requests with 1-3 of IFEval's verifiable constraints (training)",
    )  # fmt: skip


def constraints_of(example) -> list[Constraint]:
    """The constraints an example (of `load_constraints_task` or IFEval) asks for."""
    return [Constraint(i, dict(k)) for i, k in zip(example.meta["instruction_id_list"], example.meta["kwargs"])]  # fmt: skip
