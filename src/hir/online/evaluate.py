"""Accuracy on held-out queries: batched greedy decoding under the target instruction."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from accelerate import Accelerator

from hir.models import Policy
from hir.online.parallel import on_shares
from hir.runs.crash_points import crash_point
from hir.runs.fileio import atomic_write_json, atomic_write_jsonl
from hir.runs.folders import EVALUATION_SUMMARY, PREDICTIONS
from hir.runs.versions import library_versions
from hir.tasks.base import Task


@dataclass
class EvalResult:
    accuracy: float  # share of outputs whose score reaches the success threshold
    mean_score: float
    num_examples: int
    wall_seconds: float
    well_formed: float = 1.0  # share of outputs of the task's answer shape
    records: list[dict] = field(repr=False, default_factory=list)
    # The answer given most often and its share of the outputs: 1.0 when the model answers
    # every query alike, whatever the query (a policy collapsed to one answer).
    commonest_answer: str | None = None
    commonest_answer_share: float | None = None
    # The task's own measures (`Task.metrics`, e.g. IFEval's four accuracies); empty if none.
    task_metrics: dict[str, float] = field(default_factory=dict)
    # The share of outputs cut at max_new_tokens, before the model ended them.
    cut_share: float = 0.0

    def metrics(self) -> dict:
        """What a run logs of each evaluation."""
        return {
            "accuracy": self.accuracy,
            "mean_score": self.mean_score,
            "well_formed": self.well_formed,
            "commonest_answer": self.commonest_answer,
            "commonest_answer_share": self.commonest_answer_share,
            **self.task_metrics,
        }

    def summary(self) -> dict:
        return {
            **self.metrics(),
            "num_examples": self.num_examples,
            "cut_at_max_new_tokens": self.cut_share,
            "wall_seconds": round(self.wall_seconds, 3),
        }


def evaluate(
    policy: Policy,
    task: Task,
    *,
    split: str = "test",
    instruction: str | None = None,
    batch_size: int = 32,
    max_new_tokens: int = 32,
    limit: int | None = None,
    accelerator: Accelerator | None = None,
    success_threshold: float = 1.0,
    progress: str | None = None,
) -> EvalResult:
    """Greedy-decode every example of `split` under `instruction` (default: the task's
    correct-answer instruction) and score the outputs with the task's feedback function;
    accuracy counts scores >= `success_threshold`.
    With an `accelerator` of several processes, each decodes a share and all get every record."""
    start = time.perf_counter()
    task = task.for_format(policy.chat)
    examples = task.split(split)[:limit]
    records = on_shares(
        accelerator,
        examples,
        lambda mine: _score_outputs(
            policy, task, mine, instruction, batch_size, max_new_tokens, progress
        ),
    )
    scores = [r["score"] for r in records]
    count = max(len(scores), 1)
    answer, share = commonest(r["answer"] for r in records)
    task_metrics = {}
    if task.metrics is not None and records:
        by_id = {e.id: e for e in task.examples}
        task_metrics = task.metrics([by_id[r["id"]] for r in records], [r["prediction"] for r in records])  # fmt: skip
    return EvalResult(
        accuracy=sum(s >= success_threshold for s in scores) / count,
        mean_score=sum(scores) / count,
        num_examples=len(records),
        wall_seconds=time.perf_counter() - start,
        well_formed=sum(task.is_well_formed(r["answer"]) for r in records) / count,
        records=records,
        commonest_answer=answer,
        commonest_answer_share=share,
        task_metrics=task_metrics,
        cut_share=sum(r["cut"] for r in records) / count,
    )


def commonest(values: Iterable) -> tuple:
    """The commonest value and its share of all values ((None, None) for none); ties go to
    the value seen first."""
    counts = Counter(values)
    if not counts:
        return None, None
    value, count = counts.most_common(1)[0]
    return value, count / counts.total()


def _score_outputs(
    policy, task, examples, instruction, batch_size, max_new_tokens, progress=None
) -> list[dict]:
    prompts = [task.prompt(e.query, task.instruction_for(e, instruction)) for e in examples]
    outputs = policy.generate(prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                              progress=progress, return_token_ids=True)  # fmt: skip
    crash_point("evaluation")
    predictions = [prediction for ((prediction, _),) in outputs]
    end = policy.format.end_token_id
    tokens = [ids for ((_, ids),) in outputs]
    scored = task.score_outputs(prompts, predictions, examples)
    return [
        {
            "id": example.id,
            "prompt": prompt,
            "prediction": prediction,  # the raw output
            "answer": answer,  # what the feedback function scored
            "target": example.target,
            "score": score,
            "new_tokens": len(ids),
            "cut": end not in ids and len(ids) >= max_new_tokens,  # not ended by the model
        }
        for example, prompt, prediction, (answer, score), ids in zip(
            examples, prompts, predictions, scored, tokens, strict=True
        )
    ]


def write_evaluation(result: EvalResult, output_dir: str | Path, config: dict) -> Path:
    """predictions.jsonl (one line per example) and summary.json (numbers, config, versions)."""
    output_dir = Path(output_dir)
    atomic_write_jsonl(output_dir / PREDICTIONS, result.records)
    summary_path = output_dir / EVALUATION_SUMMARY
    atomic_write_json(
        summary_path, {**result.summary(), "config": config, "versions": library_versions()}
    )
    return summary_path


def evaluate_with_config(
    policy: Policy, task: Task, config, instruction: str, accelerator: Accelerator | None = None
) -> EvalResult:
    """Greedy evaluation with a run's settings (`config`: a `RunConfig` of `hir.trainers`): what
    every iteration, and the compare "start" row, report."""
    return evaluate(
        policy, task, split=config.eval_split, instruction=instruction,
        batch_size=config.eval_batch_size, max_new_tokens=config.max_new_tokens,
        limit=config.eval_limit, accelerator=accelerator,
        success_threshold=config.success_threshold,
    )  # fmt: skip
