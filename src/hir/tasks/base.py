"""What a task is: examples, a feedback function, a prompt template and a deterministic split.

The defaults reproduce the public HIR code's BIG-bench protocol (docs/method.md section 4):
prompt = instruction + "\\n\\nQ: " + query + "\\nA:", a numpy seed-1 permutation with the first
80% for training, and a normalized exact match for correctness.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from hir.errors import HIRError, user_code
from hir.tasks.example import Example
from hir.tasks.extraction import make_extractor
from hir.tasks.feedback import AnswerFeedback, BatchReward, Feedback, callable_name

CORRECT_INSTRUCTION = "Solve the question with correct answer."
WRONG_INSTRUCTION = "Solve the question with wrong answer."
PROMPT_TEMPLATE = "{instruction}\n\nQ: {query}\nA:"
# The user turn of a chat-formatted model: the question, then the instruction (with its answer
# hint), as a user would ask; the chat template itself opens the assistant's turn. (On
# SmolLM2-135M-Instruct this order gave well-formed numbers on object_counting where the
# paper's order gave 68%: benchmarks/premise.py.)
CHAT_PROMPT_TEMPLATE = "{query}\n\n{instruction}"
AUTO = "auto"
SPLITS = ("train", "validation", "test")


def normalize_answer(text: str) -> str:
    """The public code's normalization: newlines to spaces, drop spaces and periods, lowercase."""
    return str(text).replace("\n", " ").replace(" ", "").replace(".", "").lower()


def exact_match(output: str, example: Example) -> float:
    """1.0 if the output equals the target after normalization (the paper's metric), else 0.0."""
    return float(normalize_answer(output) == normalize_answer(example.target))


def exact_match_any(output: str, example: Example) -> float:
    """Like `exact_match`, but any form in `example.accepted` also counts (e.g. "nine" or "9")."""
    forms = (example.target, *example.accepted)
    return float(any(normalize_answer(output) == normalize_answer(f) for f in forms))


def number_or_exact_match_any(output: str, example: Example) -> float:
    """Like `exact_match_any`, but an output and a form that both read as numbers are compared
    as numbers ("1.5" is not "15", as the normalisation that drops periods would have it;
    "3.0" is "3"). Users' data, whose answers may be JSON numbers, is scored by it."""
    output_number = _finite_number(output)
    for form in (example.target, *example.accepted):
        form_number = _finite_number(form)
        if output_number is not None and form_number is not None:
            if output_number == form_number:
                return 1.0
        elif normalize_answer(output) == normalize_answer(form):
            return 1.0
    return 0.0


def _finite_number(text: str) -> float | None:
    text = str(text).strip()
    if "_" in text:  # float() reads "1_000"; an answer with it is text
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def render_prompt(instruction: str, query: str, template: str = PROMPT_TEMPLATE) -> str:
    # str.format only interprets the template's braces, never those inside the query.
    return template.format(instruction=instruction, query=query)


def split_indices(
    num_examples: int, seed: int = 1, train_fraction: float = 0.8, validation_fraction: float = 0.0
) -> dict[str, list[int]]:
    """The public code's split: `np.random.seed(seed); np.random.permutation(n)`, the first
    int(0.8 n) for training, the rest for test. A validation split, when asked for, is carved
    from the end of the training part, so the test split never changes."""
    order = np.random.RandomState(seed).permutation(num_examples).tolist()
    train_end = int(train_fraction * num_examples)
    validation_size = int(validation_fraction * train_end)
    return {
        "train": order[: train_end - validation_size],
        "validation": order[train_end - validation_size : train_end],
        "test": order[train_end:],
    }


@dataclass
class Task:
    """A set of examples, a feedback function that scores an output in [0, 1], a prompt
    template, and the instructions that ask for a correct or a wrong answer."""

    name: str
    examples: Sequence[Example]
    # `hir.tasks.feedback`: (answer, example) -> score, or TRL's (prompts, completions, **columns).
    feedback: AnswerFeedback | BatchReward = exact_match
    prompt_template: str = PROMPT_TEMPLATE
    correct_instruction: str = CORRECT_INSTRUCTION
    wrong_instruction: str = WRONG_INSTRUCTION
    split_seed: int = 1
    train_fraction: float = 0.8
    validation_fraction: float = 0.0
    description: str = ""
    # A regex an answer of the right shape matches in full (e.g. r"\([A-Z]\)"); logged as the
    # share of well-formed samples, which reveals a collapsing policy early.
    answer_format: str | None = None
    # Ids of training examples kept out of the training split, e.g. because a warm-up already
    # used their labels (`hir.recipes.small_start`); the validation and test splits never change.
    held_out_train_ids: frozenset[str] = frozenset()
    # How the answer is taken from an output before feedback (`hir.tasks.extraction`): a name,
    # "regex:PATTERN", "module:function" or a callable. "auto" is `chat_extraction` for chat
    # models and "none" (the paper's protocol) otherwise; `for_format` settles it.
    extraction: str | Callable = AUTO
    chat_extraction: str = "none"
    # A sentence put after the instruction ("Answer with the option letter only."); "auto" is
    # `chat_answer_hint` for chat models and none otherwise, "" is none.
    answer_hint: str = AUTO
    chat_answer_hint: str = ""
    # Seconds one feedback call may take before the run stops and names the example; None: no limit.
    feedback_timeout: float | None = None
    # "chat" or "plain" once `for_format` has settled the above for a model; None before.
    prompt_format: str | None = None
    # Every example is a test example: a benchmark with no training data of its own (IFEval).
    test_only: bool = False
    # The task's own measures of a split's outputs, reported beside accuracy by evaluation:
    # (examples, outputs) -> {name: value} (IFEval: its four accuracies).
    metrics: Callable[[Sequence[Example], Sequence[str]], dict[str, float]] | None = None

    def __post_init__(self) -> None:
        if not self.examples:
            raise HIRError(f"task {self.name!r} has no examples: give it at least one")
        if not 0.0 < self.train_fraction < 1.0:
            raise HIRError(f"train_fraction must be in (0, 1), got {self.train_fraction}")
        if self.feedback_timeout is not None and not self.feedback_timeout > 0:
            raise HIRError(f"feedback_timeout must be > 0 seconds, got {self.feedback_timeout}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise HIRError(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")
        self._split_cache: dict[str, list[int]] | None = None
        self._own_instructions = any(e.instruction is not None for e in self.examples)
        ids = [e.id for e in self.examples]
        if len(set(ids)) < len(ids):
            repeated = sorted({i for i in ids if ids.count(i) > 1})[:3]
            raise HIRError(
                f"task {self.name!r} has examples that share an id ({', '.join(map(repr, repeated))}); "
                "ids must be unique, since samples are matched to their query by id"
            )
        # Built now, so that a bad regex, function name or feedback fails at load, not mid-run.
        self._feedback = Feedback(self.feedback, timeout=self.feedback_timeout,
                                  where=f"task {self.name!r}")  # fmt: skip
        self._extractor = make_extractor("none" if self.extraction == AUTO else self.extraction)

    def for_format(self, chat: bool) -> Task:
        """This task as a model of that prompt format sees it: "auto" extraction and hint
        settled, and for chat models the user-turn prompt template (unless a custom one was
        given). The one place a task is formatted for a model: sampling, evaluation and the
        trainers call it with their policy's format. Applying it twice changes nothing; a task
        formatted for the other format is refused."""
        name = "chat" if chat else "plain"
        if self.prompt_format == name:
            return self
        if self.prompt_format is not None:
            raise HIRError(
                f"task {self.name!r} was formatted for {self.prompt_format} prompts and is now "
                f"used with a model that reads {name} prompts: format the unformatted task"
            )
        changes = {"prompt_format": name}
        if self.extraction == AUTO:
            changes["extraction"] = self.chat_extraction if chat else "none"
        if self.answer_hint == AUTO:
            changes["answer_hint"] = self.chat_answer_hint if chat else ""
        if chat and self.prompt_template == PROMPT_TEMPLATE:
            changes["prompt_template"] = CHAT_PROMPT_TEMPLATE
        return dataclasses.replace(self, **changes)

    def extract(self, output: str, example: Example) -> str:
        """The answer in `output` that the feedback function checks."""
        with user_code(f"answer extractor {callable_name(self._extractor)}",
                       detail=f" (example {example.id!r})"):  # fmt: skip
            answer = self._extractor(output, example)
        if not isinstance(answer, str):
            raise HIRError(
                f"answer extractor {callable_name(self._extractor)} returned "
                f"{type(answer).__name__} for example {example.id!r}; it must return a string"
            )
        return answer

    def split(self, name: str) -> list[Example]:
        if name not in SPLITS:
            raise HIRError(f"unknown split {name!r}: choose one of {', '.join(SPLITS)}")
        if self._split_cache is None and self.test_only:
            everything = list(range(len(self.examples)))
            self._split_cache = {"train": [], "validation": [], "test": everything}
        if self._split_cache is None:
            self._split_cache = split_indices(
                len(self.examples), self.split_seed, self.train_fraction, self.validation_fraction
            )
        examples = [self.examples[i] for i in self._split_cache[name]]
        if name == "train" and self.held_out_train_ids:
            examples = [e for e in examples if e.id not in self.held_out_train_ids]
        return examples

    def data_identity(self) -> dict:
        """What defines the data a run of this task learns and is measured on: each split's
        size, a digest of every example in its split (id, query, answers), and the feedback
        function's name. A resumed run must have the same (`hir.trainers.loop`)."""
        digest = hashlib.sha256()
        sizes = {}
        for name in SPLITS:
            examples = self.split(name)
            sizes[name] = len(examples)
            for e in examples:
                digest.update(
                    json.dumps([name, e.id, e.query, e.target, list(e.accepted)]).encode()
                )
        return {"task_examples": sizes, "task_data_sha256": digest.hexdigest()[:16],
                # (without the address in a repr, which differs from process to process)
                "feedback": re.sub(r" at 0x[0-9a-fA-F]+", "", callable_name(self.feedback))}  # fmt: skip

    @property
    def has_own_instructions(self) -> bool:
        """Whether its examples carry instructions of their own (`Example.instruction`)."""
        return self._own_instructions

    def wrong_for(self, instruction: str) -> str:
        """The wrong-answer instruction; for a task whose examples have their own instructions,
        its `wrong_instruction` names the one it negates as "{instruction}"."""
        return self.wrong_instruction.replace("{instruction}", instruction)

    def instruction_for(self, example: Example, instruction: str) -> str:
        """What `example` is asked under when the method asks for `instruction`: the example's
        own instruction if it has one (`Example.instruction`), else `instruction`."""
        return instruction if example.instruction is None else example.instruction

    def prompt(self, query: str, instruction: str | None = None) -> str:
        instruction = self.correct_instruction if instruction is None else instruction
        hint = "" if self.answer_hint == AUTO else self.answer_hint
        return render_prompt(f"{instruction} {hint}" if hint else instruction, query,
                             self.prompt_template)  # fmt: skip

    def is_well_formed(self, answer: str) -> bool:
        """Whether an (extracted) answer has the task's answer shape."""
        return (
            self.answer_format is None
            or re.fullmatch(self.answer_format, answer.strip()) is not None
        )

    def score(self, output: str, example: Example) -> float:
        """The feedback on one output (its answer extracted first), checked: a number in
        [0, 1] or a clear error."""
        return self.score_outputs([self.prompt(example.query)], [output], [example])[0][1]

    def score_answer(self, answer: str, example: Example) -> float:
        """The feedback on an already extracted answer (read as the whole output)."""
        return self._feedback([self.prompt(example.query)], [answer], [answer], [example])[0]

    def trl_rows(
        self, split: str = "train", instruction: str | None = None, conversational: bool = False
    ) -> list[dict]:
        """The split as rows of a TRL dataset: `prompt` (the task's prompt under `instruction`;
        `conversational`: the chat-formatted task's prompt as one user message, which TRL renders
        with the chat template as hir's `--prompt_format chat` does; score them with the reward
        of `task.for_format(True)`) and `example_id`, which `trl_reward` reads to find each
        completion's example."""

        task = self.for_format(True) if conversational else self  # a chat model's prompts

        def prompt(example: Example):
            text = task.prompt(example.query, instruction)
            return [{"role": "user", "content": text}] if conversational else text

        return [{"prompt": prompt(e), "example_id": e.id} for e in self.split(split)]

    def trl_reward(self):
        """This task's feedback as a TRL reward function (`reward_funcs=[task.trl_reward()]` of
        `GRPOTrainer` or `RLOOTrainer`, on `trl_rows`): each completion scored as hir scores it,
        its answer extracted and checked by the task's feedback."""
        by_id = {e.id: e for e in self.examples}

        def reward(prompts, completions, example_id, **kwargs) -> list[float]:
            examples = [by_id[i] for i in example_id]
            # A conversational completion is a list of messages: the last one's text is scored.
            texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
            prompts = [p[-1]["content"] if isinstance(p, list) else p for p in prompts]
            return [score for _, score in self.score_outputs(prompts, texts, examples)]

        reward.__name__ = f"hir_{self.name.replace('/', '_')}"
        return reward

    def score_outputs(
        self, prompts: Sequence[str], outputs: Sequence[str], examples: Sequence[Example]
    ) -> list[tuple[str, float]]:
        """(extracted answer, score) of each output, in one feedback call for a batch function
        (`hir.tasks.feedback`): what sampling, evaluation and PPO's reward all use."""
        answers = [self.extract(o, e) for o, e in zip(outputs, examples, strict=True)]
        scores = self._feedback(prompts, outputs, answers, examples)
        return list(zip(answers, scores))
