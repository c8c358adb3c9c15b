"""HIR's premise, measured: does a policy follow the instruction it is relabeled with?

Greedy answers on a split under the correct-answer and under the wrong-answer instruction: the
accuracy under each, and the share of queries where both give the same extracted answer. A
policy that follows the instructions scores high under the first, low under the second, and
rarely answers the same; one that ignores them answers the same.
"""

from __future__ import annotations

from collections import Counter

from hir.models import Policy
from hir.online.evaluate import EvalResult, evaluate
from hir.tasks import Task


def measure_premise(
    policy: Policy, task: Task, split: str = "test", max_new_tokens: int = 24,
    limit: int | None = None,
) -> dict:  # fmt: skip
    runs = greedy_under_both(policy, task, split, max_new_tokens, limit)
    return {
        "task": task.name,
        "examples": len(runs["correct"].records),
        "accuracy_correct_instruction": runs["correct"].accuracy,
        "accuracy_wrong_instruction": runs["wrong"].accuracy,
        "same_answer_share": same_answer_share(runs),
        "well_formed_correct_instruction": runs["correct"].well_formed,
        "well_formed_wrong_instruction": runs["wrong"].well_formed,
        # A policy that answers one option for everything shows here, whatever its accuracy.
        "top_answers_correct_instruction": top_answers(runs["correct"].records),
        "top_answers_wrong_instruction": top_answers(runs["wrong"].records),
        "examples_correct": runs["correct"].records[:3],
        "examples_wrong": runs["wrong"].records[:3],
    }


def greedy_under_both(
    policy: Policy, task: Task, split: str, max_new_tokens: int, limit: int | None,
    batch_size: int = 32,
) -> dict[str, EvalResult]:  # fmt: skip
    """Greedy evaluations of `split` under the task's correct-answer ("correct") and
    wrong-answer ("wrong") instruction."""
    task = task.for_format(policy.chat)
    return {
        name: evaluate(
            policy,
            task,
            split=split,
            instruction=instruction,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            limit=limit,
        )  # fmt: skip
        for name, instruction in (
            ("correct", task.correct_instruction),
            ("wrong", task.wrong_instruction),
        )  # fmt: skip
    }


def same_answer_share(runs: dict[str, EvalResult]) -> float:
    """Share of queries whose extracted answer is the same under both instructions."""
    same = [a["answer"] == b["answer"]
            for a, b in zip(runs["correct"].records, runs["wrong"].records)]  # fmt: skip
    return sum(same) / max(len(same), 1)


def top_answers(records: list[dict], most: int = 5) -> dict[str, int]:
    """The most frequent extracted answers and how many queries got each."""
    return dict(Counter(r["answer"] for r in records).most_common(most))
