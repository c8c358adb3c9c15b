"""An instruction warm-up for a pretrained model, on tasks other than the one it will be
compared on: supervised training under both instructions, "give a correct answer" -> the
label, "give a wrong answer" -> another example's label that the feedback scores wrong. It
stands for what FLAN did to T5 before HIR saw it: a model that tells the two instructions
apart, the premise HIR's relabeling rests on. The target task's labels are never used: its
name is refused among the warm-up tasks, and its premise is measured on its validation split.

    hir warm-up --model smollm2-135m-instruct \\
        --tasks bigbench/tracking_shuffled_objects_three_objects,synthetic/count \\
        --targets bigbench/logical_deduction_three_objects --output_dir models/smollm2-warm
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hir.arguments import ModelArguments
from hir.errors import HIRError
from hir.options import flag_help
from hir.recipes.premise import measure_premise
from hir.runs.fileio import atomic_write_json
from hir.runs.folders import WARMUP_RECORD
from hir.runs.staging import check_target, staged_folder
from hir.runs.versions import library_versions
from hir.tasks import Task
from hir.trainers.finetune import instruction_pairs, supervised_finetune


@dataclass(frozen=True)
class WarmupSettings:
    """How `hir warm-up` trains and measures (each field is also its flag)."""

    examples_per_task: int = field(default=100, metadata=flag_help("labeled training examples per warm-up task"))  # fmt: skip
    epochs: int = field(default=2, metadata=flag_help("passes over the warm-up pairs"))
    learning_rate: float = field(default=3e-4, metadata=flag_help("AdamW learning rate"))
    batch_size: int = field(default=16, metadata=flag_help("pairs per step"))
    seed: int = field(default=0, metadata=flag_help("seed of the example choice and training order"))  # fmt: skip
    premise_limit: int | None = field(default=40, metadata=flag_help("queries per premise measurement (none: the whole split)"))  # fmt: skip
    max_new_tokens: int = field(default=24, metadata=flag_help("longest greedy answer in the premise measurement"))  # fmt: skip


def warmup_pairs(tasks: list[Task], settings: WarmupSettings, chat: bool) -> list[tuple[str, str]]:
    """Both instructions' (prompt, output) pairs for `examples_per_task` training examples of
    each task, in the prompt format of the model, shuffled together."""
    rng = random.Random(settings.seed)
    pairs = []
    for task in tasks:
        task = task.for_format(chat)
        train = task.split("train")
        chosen = rng.sample(train, min(settings.examples_per_task, len(train)))
        pairs += instruction_pairs(task, chosen, rng)
    rng.shuffle(pairs)
    return pairs


def instruction_warmup(
    model_args: ModelArguments,
    tasks: list[Task],
    targets: list[Task],
    output_dir: str | Path,
    settings: WarmupSettings = WarmupSettings(),
    overwrite: bool = False,
) -> dict:
    """Warm `model_args`'s model up on `tasks`, measure the premise on every warm-up task's test
    split and every target's validation split before and after, and write the warmed model
    (adapters merged) with `warmup.json` to `output_dir`."""
    clash = {t.name for t in tasks} & {t.name for t in targets}
    if clash:
        raise HIRError(f"{', '.join(sorted(clash))} is both a warm-up task and a target: the warm-up must not see the target's labels")  # fmt: skip
    for target in targets:
        if not target.split("validation"):
            raise HIRError(f"target {target.name} has no validation split to measure the premise on: set --validation_fraction (e.g. 0.2)")  # fmt: skip
    output_dir = check_target(
        output_dir, overwrite
    )  # a non-empty folder is never overwritten silently
    started = time.perf_counter()
    policy = model_args.load_policy()

    def premise() -> list[dict]:
        rows = [measure_premise(policy, t, "test", settings.max_new_tokens, settings.premise_limit) for t in tasks]  # fmt: skip
        rows += [measure_premise(policy, t, "validation", settings.max_new_tokens, settings.premise_limit) for t in targets]  # fmt: skip
        for row, role in zip(rows, ["warm-up"] * len(tasks) + ["target"] * len(targets)):
            row["role"] = role
        return rows

    before = premise()
    pairs = warmup_pairs(tasks, settings, policy.chat)
    training = supervised_finetune(policy, pairs, epochs=settings.epochs, learning_rate=settings.learning_rate,
                                   batch_size=settings.batch_size, seed=settings.seed,
                                   progress="instruction warm-up")  # fmt: skip
    after = premise()
    record = {"model": model_args.model, "tasks": [t.name for t in tasks],
              "targets": [t.name for t in targets], "settings": asdict(settings),
              "model_arguments": asdict(model_args), "pairs": len(pairs), "training": training,
              "premise_before": before, "premise_after": after,
              "wall_seconds": time.perf_counter() - started, "versions": library_versions()}  # fmt: skip
    with staged_folder(
        output_dir, overwrite, made_by="hir warm-up"
    ) as staging:  # all of it, or nothing
        policy.save(staging, merge=True)
        atomic_write_json(staging / WARMUP_RECORD, record)
    return record


def premise_table(record: dict) -> str:
    lines = ["| task | role | acc. correct instr. (before -> after) | acc. wrong instr. | same answer |",
             "|---|---|---|---|---|"]  # fmt: skip
    for b, a in zip(record["premise_before"], record["premise_after"]):
        lines.append(
            f"| {a['task']} | {a['role']} | {b['accuracy_correct_instruction']:.3f} -> {a['accuracy_correct_instruction']:.3f} "
            f"| {b['accuracy_wrong_instruction']:.3f} -> {a['accuracy_wrong_instruction']:.3f} "
            f"| {b['same_answer_share']:.3f} -> {a['same_answer_share']:.3f} |"
        )  # fmt: skip
    return "\n".join(lines)
