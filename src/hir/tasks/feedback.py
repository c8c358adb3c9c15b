"""The one feedback contract: what scores a model's outputs, for every method alike (HIR's
relabeling and FARL's filter read these scores, PPO takes them as its reward, the reward model
is trained on rankings made from them).

A feedback function is a plain Python callable in either of two forms:

- **per answer** (hir's): `def score(answer: str, example: Example) -> float`, called once per
  output with the answer the task's extractor took from it and the example it answers;
- **batch, TRL's form**: `def reward(prompts, completions, **kwargs) -> list[float]`, called
  once per batch, exactly as TRL calls a reward function: `prompts` (the task prompts, before any
  chat template), `completions` (the raw outputs) and the dataset columns as keyword lists
  (`query`, `target`, and each extra column of the user's data, e.g. `answer` or `solution`).
  A TRL user's reward function works unchanged. It is recognised by its `completions` parameter.

`Feedback` wraps either into one batch call, with the checks every score gets: a number, finite,
and (for task feedback, whose 1.0 means correct) in [0, 1]; a reward model's scores are
unbounded (`bounded=False`).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence

import numpy as np

from hir.errors import HIRError, user_code
from hir.tasks.example import Example
from hir.tasks.time_limit import TimeLimitExceeded, time_limit

AnswerFeedback = Callable[[str, Example], float]
BatchReward = Callable[..., Sequence[float]]


def is_batch_reward(function: Callable) -> bool:
    """TRL's form: a `completions` parameter (per-answer functions take an answer and an example)."""
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):  # a builtin without a signature: take it as per answer
        return False
    return "completions" in parameters


class Feedback:
    """`feedback(prompts, completions, answers, examples) -> list[float]`, one score per output."""

    def __init__(
        self,
        function: Callable,
        *,
        timeout: float | None = None,
        bounded: bool = True,
        what: str = "feedback function",
        where: str = "",
    ) -> None:
        """`where` names the data in messages, e.g. "task 'bigbench/object_counting'"."""
        if not callable(function):
            raise HIRError(f"{what} {function!r} is not callable")
        self.function = function
        self.batch = is_batch_reward(function)
        self.timeout = timeout
        self.bounded = bounded
        self.what = what
        self.where = where

    @property
    def name(self) -> str:
        return callable_name(self.function)

    def __call__(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        answers: Sequence[str],
        examples: Sequence[Example],
    ) -> list[float]:
        """Scores of `completions` (raw outputs) with their extracted `answers`, for `examples`
        asked by `prompts`."""
        if not examples:
            return []
        if self.batch:
            values = self._call(examples[0], lambda: self.function(
                prompts=list(prompts), completions=list(completions), **dataset_columns(examples)
            ))  # fmt: skip
            if isinstance(values, np.ndarray) or hasattr(values, "tolist"):
                values = values.tolist()
            if not isinstance(values, (list, tuple)) or len(values) != len(examples):
                raise HIRError(
                    f"{self.what} {self.name} returned {type(values).__name__} for a batch of "
                    f"{len(examples)} completions; it must return a list of {len(examples)} numbers"
                )
            return [self.check(v, e) for v, e in zip(values, examples)]
        return [self.check(self._call(e, lambda a=a, e=e: self.function(a, e)), e)
                for a, e in zip(answers, examples)]  # fmt: skip

    def _call(self, example: Example, call: Callable):
        where = f"{self.where}, " if self.where else ""
        try:
            with time_limit(self.timeout), user_code(
                f"{self.what} {self.name}", detail=f" ({where}example {example.id!r})",
                fix="; fix the function so it returns a score for every output",
                passthrough=(TimeLimitExceeded,),
            ):  # fmt: skip
                return call()
        except TimeLimitExceeded:
            raise HIRError(
                f"{self.what} {self.name} took more than {self.timeout:g}s on example "
                f"{example.id!r}{f' ({self.where})' if self.where else ''}; fix it, or give it longer with --feedback_timeout"
            ) from None

    def check(self, value, example: Example) -> float:
        if not isinstance(value, (bool, int, float, np.number, np.bool_)):
            raise HIRError(
                f"{self.what} {self.name} returned {type(value).__name__} {value!r} for example "
                f"{example.id!r}; it must return a number"
                + (" in [0, 1] (1.0 = correct)" if self.bounded else "")
            )
        value = float(value)
        if math.isnan(value) or (self.bounded and not 0.0 <= value <= 1.0) or math.isinf(value):
            raise HIRError(
                f"{self.what} {self.name} returned {value} for example {example.id!r}; scores "
                + ("must lie in [0, 1] (1.0 = correct)" if self.bounded else "must be finite")
            )
        return value


def dataset_columns(examples: Sequence[Example]) -> dict[str, list]:
    """The keyword lists a TRL reward function receives: `query`, `target`, `example_id` and
    every extra column the examples carry (user data keeps its own column names)."""
    columns = {"query": [e.query for e in examples], "target": [e.target for e in examples],
               "example_id": [e.id for e in examples]}  # fmt: skip
    for name in dict.fromkeys(k for e in examples for k in e.meta):
        if name not in columns and name not in ("prompts", "completions"):
            columns[name] = [e.meta.get(name) for e in examples]
    return columns


def callable_name(fn: Callable) -> str:
    """`module:qualname`: how messages and run records name a user's function."""
    module = getattr(fn, "__module__", None)
    name = getattr(fn, "__qualname__", None) or repr(fn)
    return f"{module}:{name}" if module else name
