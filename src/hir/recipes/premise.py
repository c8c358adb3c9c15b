"""HIR's premise, measured: does a policy follow the instruction it is relabeled with?

Greedy answers on a split under the correct-answer and under the wrong-answer instruction: the
accuracy under each, and the share of queries where both give the same extracted answer. A
policy that follows the instructions scores high under the first, low under the second, and
rarely answers the same; one that ignores them answers the same.
"""

from __future__ import annotations

from collections import Counter

from hir.models import Policy
from hir.online.evaluate import evaluate
from hir.tasks import Task


def measure_premise(
    policy: Policy, task: Task, split: str = "test", max_new_tokens: int = 24,
    limit: int | None = None,
) -> dict:  # fmt: skip
    runs = {}
    task = task.for_format(policy.chat)
    for name, instruction in (("correct", task.correct_instruction),
                              ("wrong", task.wrong_instruction)):  # fmt: skip
        runs[name] = evaluate(policy, task, split=split, instruction=instruction,
                              max_new_tokens=max_new_tokens, limit=limit)  # fmt: skip
    same = [
        a["answer"] == b["answer"] for a, b in zip(runs["correct"].records, runs["wrong"].records)
    ]
    return {
        "task": task.name,
        "examples": len(same),
        "accuracy_correct_instruction": runs["correct"].accuracy,
        "accuracy_wrong_instruction": runs["wrong"].accuracy,
        "same_answer_share": sum(same) / max(len(same), 1),
        "well_formed_correct_instruction": runs["correct"].well_formed,
        "well_formed_wrong_instruction": runs["wrong"].well_formed,
        # A policy that answers one option for everything shows here, whatever its accuracy.
        "top_answers_correct_instruction": top_answers(runs["correct"].records),
        "top_answers_wrong_instruction": top_answers(runs["wrong"].records),
        "examples_correct": runs["correct"].records[:3],
        "examples_wrong": runs["wrong"].records[:3],
    }


def top_answers(records: list[dict], most: int = 5) -> dict[str, int]:
    """The most frequent extracted answers and how many queries got each."""
    return dict(Counter(r["answer"] for r in records).most_common(most))
