"""Tasks: what to solve and how to check it.

`load_task("bigbench/object_counting")`, `load_task("synthetic/count")`,
`load_task("jsonl:data.jsonl")` or `load_task("hf:path_or_name")`; `list_tasks()` names the
built-in ones; `PAPER_TASK_NAMES` are the paper's twelve.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

from hir.errors import HIRError
from hir.tasks.base import (
    CORRECT_INSTRUCTION,
    WRONG_INSTRUCTION,
    Example,
    Task,
    exact_match,
    exact_match_any,
    normalize_answer,
    render_prompt,
)
from hir.tasks.bigbench import PAPER_TASKS, load_bigbench_task
from hir.tasks.synthetic import SYNTHETIC_TASKS, load_synthetic_task
from hir.tasks.user_data import load_feedback, load_hf_task, load_jsonl_task, task_from_dataset

__all__ = [
    "CORRECT_INSTRUCTION",
    "WRONG_INSTRUCTION",
    "Example",
    "Task",
    "exact_match",
    "exact_match_any",
    "PAPER_TASK_NAMES",
    "list_tasks",
    "load_feedback",
    "load_task",
    "normalize_answer",
    "render_prompt",
    "task_from_dataset",
]


def list_tasks() -> dict[str, str]:
    """Every built-in task name with a one-line description."""
    tasks = {f"bigbench/{name}": f"BIG-bench {folder}" for name, folder in PAPER_TASKS.items()}
    tasks.update(
        {f"synthetic/{k}": f"synthetic: {s.description}" for k, s in SYNTHETIC_TASKS.items()}
    )
    tasks["constraints"] = ("generated requests with 1-3 of IFEval's verifiable constraints, for "
                            "training (never IFEval's prompts; --num_examples, --data_seed)")  # fmt: skip
    tasks["ifeval"] = ("IFEval: 541 prompts with verifiable instructions, test only, scored by "
                       "lm-eval's checkers (google/IFEval, or ifeval:<input_data.jsonl>)")  # fmt: skip
    return tasks


# The twelve BIG-bench tasks of the HIR paper, by their `load_task` names.
PAPER_TASK_NAMES = tuple(f"bigbench/{name}" for name in PAPER_TASKS)


def load_task(
    spec: str,
    *,
    bigbench_dir: str | os.PathLike | None = None,
    download: bool = True,
    feedback: str | Callable | None = None,
    query_field: str = "query",
    answer_field: str = "answer",
    hf_split: str = "train",
    num_examples: int = 1000,
    data_seed: int = 0,
    split_seed: int | None = None,
    validation_fraction: float | None = None,
    extract: str | Callable = "auto",
    answer_hint: str = "auto",
    feedback_timeout: float | None = None,
    shuffle_options: int | None = None,
) -> Task:
    """Load one task by name: `bigbench/<name>`, `synthetic/<kind>`, `jsonl:<file>` (or a
    path ending in .jsonl), `hf:<dataset>`, `ifeval` (`ifeval:<file>`: a local copy), or
    `constraints` (generated requests with IFEval's constraints, for training). `feedback` replaces the task's own verifier;
    `extract` and `answer_hint` replace how answers are taken from outputs and the format hint
    (`hir.tasks.extraction`; "auto": the task's own choice for chat models, none for plain ones).
    `shuffle_options` (a seed) permutes a BIG-bench multiple-choice example's options."""
    family, _, name = spec.partition("/")
    if shuffle_options is not None and not (family == "bigbench" and name):
        raise HIRError(
            f"shuffle_options applies to BIG-bench multiple-choice tasks, not {spec!r}: leave it out"
        )
    if family == "bigbench" and name:
        task = load_bigbench_task(name, bigbench_dir, download, shuffle_options)
    elif family == "synthetic" and name in SYNTHETIC_TASKS:
        task = load_synthetic_task(name, num_examples=num_examples, data_seed=data_seed)
    elif spec == "constraints":
        from hir.tasks.constraints import load_constraints_task

        task = load_constraints_task(num_examples=num_examples, data_seed=data_seed)
    elif spec == "ifeval" or spec.startswith("ifeval:"):
        from hir.tasks.ifeval import load_ifeval_task

        task = load_ifeval_task(spec.removeprefix("ifeval").removeprefix(":") or None)
    elif spec.startswith("jsonl:") or spec.endswith(".jsonl"):
        task = load_jsonl_task(spec.removeprefix("jsonl:"), query_field, answer_field)
    elif spec.startswith("hf:"):
        task = load_hf_task(spec.removeprefix("hf:"), hf_split, query_field, answer_field)
    else:
        raise HIRError(
            f"unknown task {spec!r}: use a name from `hir tasks list` (e.g. synthetic/count, "
            "bigbench/object_counting), jsonl:<file>, hf:<dataset>, or ifeval[:<file>]"
        )
    overrides = {
        "feedback": None if feedback is None else load_feedback(feedback),
        "split_seed": split_seed,
        "validation_fraction": validation_fraction,
        "extraction": None if extract == "auto" else extract,
        "answer_hint": None if answer_hint == "auto" else answer_hint,
        "feedback_timeout": feedback_timeout,
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    # replace() runs the Task's checks again on the new values.
    return dataclasses.replace(task, **overrides) if overrides else task
