"""`hir compare --final_eval TASK`: each finished run's model (and the start) scored on another
task's test split once the run ends, so a comparison tuned on one task reports on another (the
IFEval study: trained on generated constraint requests, reported on IFEval's 541 prompts), with
its paired verdicts (`hir.compare.statistics.write_paired_evaluation`).

Each evaluation lives in RUN/final-eval/ (summary.json, predictions.jsonl), as `hir eval --run
RUN --output_dir RUN/final-eval` writes it; one that exists is read back, not made again. Greedy
decoding makes the same model's evaluation the same: a start row whose weights (by their sha256)
and settings are another seed's start's takes a copy of that evaluation (IFEval: 20-40 minutes
each on a CPU).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from hir.compare.transfer import final_policy
from hir.errors import HIRError
from hir.models import Policy
from hir.online.evaluate import evaluate, write_evaluation
from hir.runs.fileio import atomic_write_text
from hir.runs.folders import EVALUATION_SUMMARY, PREDICTIONS, mark_folder
from hir.tasks.base import Task

FOLDER = "final-eval"


@dataclass(frozen=True)
class FinalEvaluation:
    """What every run is scored on at its end: `task`'s test split, greedy, up to
    `max_new_tokens`, `batch_size` prompts per generate call; `metric` is what the paired
    verdicts compare (IFEval: "strict_mean")."""

    task: Task
    spec: str
    max_new_tokens: int = 512
    batch_size: int = 16
    metric: str = "accuracy"

    def __post_init__(self) -> None:
        if not self.task.split("test"):
            raise HIRError(f"--final_eval {self.spec} has no test examples to score the runs on")
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise HIRError("--final_eval_max_new_tokens and the batch size must be >= 1")


def final_evaluation(folder: Path, settings: FinalEvaluation, load_start: Callable[[], Policy],
                     record: dict, trained: bool = True, same_as: Sequence[Path] = ()) -> dict | None:  # fmt: skip
    """The final evaluation of the run in `folder`: read back when it was made before, else
    made on the start (`load_start()`) with the run's final checkpoint loaded (`trained`), or
    copied from the run folder among `same_as` whose evaluation had the same weights and
    settings. None when the run's checkpoints are gone."""
    summary = folder / FOLDER / EVALUATION_SUMMARY
    if summary.is_file():
        return json.loads(summary.read_text(encoding="utf-8"))
    loaded = final_policy(folder, load_start, trained)
    if loaded is None:
        return None
    policy, checkpoint = loaded
    config = {**record, "task": settings.spec, "split": "test", "max_new_tokens": settings.max_new_tokens,
              "batch_size": settings.batch_size, "weights_sha256": weights_sha256(policy.model)}  # fmt: skip
    mark_folder(folder / FOLDER, "evaluation", "hir compare --final_eval")
    for other in same_as:
        made = other / FOLDER / EVALUATION_SUMMARY
        if (
            made.is_file()
            and _settings(json.loads(made.read_text(encoding="utf-8"))["config"]) == config
        ):
            for name in (PREDICTIONS, EVALUATION_SUMMARY):
                copied = (other / FOLDER / name).read_text(encoding="utf-8")
                atomic_write_text(folder / FOLDER / name, copied)
            return json.loads(summary.read_text(encoding="utf-8"))
    result = evaluate(policy, settings.task, split="test", batch_size=settings.batch_size,
                      max_new_tokens=settings.max_new_tokens,
                      progress=f"{folder.parent.name}/{folder.name}: {settings.spec}")  # fmt: skip
    config["run"] = None if checkpoint is None else str(checkpoint)
    write_evaluation(result, folder / FOLDER, config)
    return json.loads(summary.read_text(encoding="utf-8"))


def _settings(config: dict) -> dict:
    """An evaluation's config without the checkpoint it loaded (a path inside its own run)."""
    return {key: value for key, value in config.items() if key != "run"}


def weights_sha256(model: torch.nn.Module) -> str:
    """The sha256 of every weight's name, dtype and bytes, in the state dict's order."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
