"""Hindsight relabeling (phi): the instruction that an output, given its score, *does* satisfy.

A relabeler is called as `relabeler(instruction, query, output, score) -> instruction` and also
names its `target_instruction` (asked for at evaluation) and, for the pairwise contrastive loss,
the `opposite` of an instruction.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from hir.errors import HIRError, user_code


@dataclass
class BinaryRelabel:
    """The paper's scripted relabel: score >= threshold -> the correct-answer instruction,
    otherwise the wrong-answer one. No sample is wasted: a failure succeeds at the latter."""

    correct_instruction: str
    wrong_instruction: str
    threshold: float = 1.0

    @property
    def target_instruction(self) -> str:
        return self.correct_instruction

    @property
    def instructions(self) -> list[str]:
        return [self.correct_instruction, self.wrong_instruction]

    def fit(self, scores: Sequence[float]) -> None:
        """Binary relabeling needs nothing from the buffer."""

    def __call__(self, instruction: str, query: str, output: str, score: float) -> str:
        return self.correct_instruction if score >= self.threshold else self.wrong_instruction

    def opposite(self, instruction: str) -> str:
        return (
            self.wrong_instruction
            if instruction == self.correct_instruction
            else self.correct_instruction
        )


WORDINGS = ("top", "percentile")


@dataclass
class QuantileRelabel:
    """Graded feedback: an output's rank among the buffer's scores picks one of `num_buckets`
    instructions. Evaluation asks for the top bucket. Call `fit(scores)` on the buffer before
    relabeling it. The bucket's words follow `request`, the task's own instruction, so that
    the instruction still says what to do (the bucket's words alone name no task: a chat model
    asked only "Give an answer that scores in the top 25%." answers that sentence). Two
    wordings of a bucket (4 buckets, the best one):

    - "top": "Give an answer that scores in the top 25%.";
    - "percentile", the method's RLHF example: "Give an answer that ranks about 88% in the
      training data." (the bucket's middle percentile)."""

    num_buckets: int = 4
    wording: str = "top"
    # What the bucket's words follow: the task's own instruction, so that a relabeled
    # instruction still names the task (the bucket's words alone, "" : the paper's example).
    request: str = ""
    _sorted_scores: list[float] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if self.num_buckets < 2:
            raise HIRError(f"num_buckets must be at least 2, got {self.num_buckets}")
        if self.wording not in WORDINGS:
            raise HIRError(f"wording must be one of {', '.join(WORDINGS)}, got {self.wording!r}")

    @property
    def instructions(self) -> list[str]:
        return [self._instruction(b) for b in range(self.num_buckets)]

    @property
    def target_instruction(self) -> str:
        return self._instruction(0)

    def _instruction(self, bucket: int) -> str:
        return f"{self.request} {self._words(bucket)}" if self.request else self._words(bucket)

    def _words(self, bucket: int) -> str:
        if self.wording == "percentile":
            percentile = round(100 * (1 - (bucket + 0.5) / self.num_buckets))
            return f"Give an answer that ranks about {percentile}% in the training data."
        upper = round(100 * (bucket + 1) / self.num_buckets)
        if bucket == 0:
            return f"Give an answer that scores in the top {upper}%."
        lower = round(100 * bucket / self.num_buckets)
        return f"Give an answer that scores in the top {upper}% but not the top {lower}%."

    def fit(self, scores: Sequence[float]) -> None:
        self._sorted_scores = sorted(scores)

    def bucket(self, score: float) -> int:
        """The bucket of `score` (0: the best), by its rank (`rank_share`)."""
        return min(int(self.rank_share(score) * self.num_buckets), self.num_buckets - 1)

    def rank_share(self, score: float) -> float:
        """`score`'s mid-rank from the top as a share of the buffer, in [0, 1): (scores above
        + half the ties) / n; its bucket is the share times the number of buckets.

        Ties take their mid-rank, not their best rank. Early graded buffers are mostly 0s: at
        their best rank every 0 would be "in the top 25%", the target instruction, and the
        instruction would say nothing about the output. At the mid-rank a block of ties lands
        in the middle of the ranking it occupies, so the top bucket holds only outputs that
        really rank near the top. (Absolute score bands were the alternative; ranks keep the
        paper's "ranks about X% among answers" meaning for any score scale.)"""
        if not self._sorted_scores:
            raise HIRError("QuantileRelabel needs fit(scores) on the buffer before relabeling")
        count = len(self._sorted_scores)
        at_or_below = bisect.bisect_right(self._sorted_scores, score)
        ties = at_or_below - bisect.bisect_left(self._sorted_scores, score)
        mid_rank = (count - at_or_below) + ties / 2
        return mid_rank / count

    def __call__(self, instruction: str, query: str, output: str, score: float) -> str:
        return self._instruction(self.bucket(score))

    def opposite(self, instruction: str) -> str:
        # The bucket at the other end of the ranking.
        index = self.instructions.index(instruction)
        return self._instruction(0 if index >= self.num_buckets / 2 else self.num_buckets - 1)


def in_top_share(scores: Sequence[float], share: float) -> list[bool]:
    """Which of `scores` rank in the top `share` of them (by mid-rank, as the quantile buckets:
    a block of ties straddling the boundary falls on the side of its middle): FARL's filter on
    a reward's unbounded scores."""
    ranking = QuantileRelabel()
    ranking.fit(scores)
    return [ranking.rank_share(score) < share for score in scores]


@dataclass
class CallableRelabel:
    """Any user function `(instruction, query, output, score) -> instruction`. For the
    pairwise contrastive loss, the opposite of an instruction is `opposite_function(instr)` if
    given, else the target instruction for any other instruction, and `fallback_opposite` for
    the target instruction itself."""

    function: Callable[[str, str, str, float], str]
    target_instruction: str
    fallback_opposite: str
    opposite_function: Callable[[str], str] | None = None

    def fit(self, scores: Sequence[float]) -> None:
        pass

    def __call__(self, instruction: str, query: str, output: str, score: float) -> str:
        with user_code("relabel function",
                       fix="; fix it so that it returns an instruction for every sample"):  # fmt: skip
            relabeled = self.function(instruction, query, output, score)
        if not isinstance(relabeled, str):
            raise HIRError(
                f"relabel function returned {type(relabeled).__name__} {relabeled!r}; it must return an instruction string"
            )
        return relabeled

    def opposite(self, instruction: str) -> str:
        if self.opposite_function is not None:
            return self.opposite_function(instruction)
        return (
            self.fallback_opposite
            if instruction == self.target_instruction
            else self.target_instruction
        )


@dataclass
class OwnInstructionRelabel:
    """Binary relabeling where each example has an instruction of its own (`Example.instruction`):
    an output that reaches the threshold keeps the instruction it was sampled under, any other
    gets that instruction's wrong-answer form (`wrong_template`, naming it "{instruction}")."""

    wrong_template: str
    threshold: float = 1.0
    target_instruction: str = ""  # (each example's own is asked for)

    def fit(self, scores: Sequence[float]) -> None:
        """Nothing to fit."""

    def __call__(self, instruction: str, query: str, output: str, score: float) -> str:
        if score >= self.threshold:
            return instruction
        return self.wrong_template.replace("{instruction}", instruction)

    def opposite(self, instruction: str) -> str:
        return self.wrong_template.replace("{instruction}", instruction)


class ConstraintRelabel:
    """Hindsight constraint relabeling (docs/method.md, "Constraint instructions"): each output
    is relabeled with constraints it satisfies, those of its own that it met and others that
    describe what it achieved (`hir.tasks.constraints.hindsight_constraints`), in IFEval's
    words; an output that met all of its own keeps its instruction. Needs a task whose examples
    name their constraints (`load_task("constraints")`). Reproducible: each output's draw is
    seeded by `seed`, its query and the output."""

    def __init__(self, task, seed: int = 0) -> None:
        from hir.tasks.constraints import constraints_of

        if not task.has_own_instructions or not all("instruction_id_list" in e.meta for e in task.examples):  # fmt: skip
            raise HIRError(
                f"--relabel constraints needs examples that name their constraints, and task "
                f"{task.name!r} does not: use --task constraints (generated requests with "
                "IFEval's constraints)"
            )
        self.seed = seed
        self.target_instruction = task.correct_instruction
        self.wrong_template = task.wrong_instruction
        self._own = {(e.query, e.instruction): constraints_of(e) for e in task.examples}

    def fit(self, scores: Sequence[float]) -> None:
        """Nothing to fit."""

    def __call__(self, instruction: str, query: str, output: str, score: float) -> str:
        import random
        import zlib

        from hir.tasks.constraints import describe, hindsight_constraints

        own = self._own.get((query, instruction))
        if own is None:
            raise HIRError(f"no example asks {query!r} under {instruction!r}: relabel the task's own samples")  # fmt: skip
        rng = random.Random(zlib.crc32(f"{self.seed}\0{query}\0{output}".encode()))
        achieved = hindsight_constraints(output, query, own, rng)
        if achieved == own:
            return instruction
        return " ".join(describe(c, query) for c in achieved)

    def opposite(self, instruction: str) -> str:
        return self.wrong_template.replace("{instruction}", instruction)
