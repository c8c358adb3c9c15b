"""`hir eval`: greedy accuracy of a model (or a run's checkpoint) on a task's split, or
(`--premise`) under both instructions."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hir.commands import option_parser
from hir.errors import HIRError


@dataclass
class EvalArguments:
    split: str = field(default="test", metadata={"help": "train, validation or test"})
    instruction: str | None = field(
        default=None, metadata={"help": "instruction to decode under (default: the correct-answer one)"}
    )  # fmt: skip
    output_dir: str = field(
        default="outputs/eval", metadata={"help": "where predictions.jsonl and summary.json go"}
    )
    batch_size: int = field(default=32, metadata={"help": "queries per generate call"})
    max_new_tokens: int = field(default=32, metadata={"help": "longest output"})
    limit: int | None = field(default=None, metadata={"help": "evaluate only the first N examples"})
    device: str = field(default="auto", metadata={"help": "cpu, cuda, cuda:1, ... (default: cuda if present)"})  # fmt: skip
    seed: int = field(default=0, metadata={"help": "seed (greedy decoding does not use it)"})
    run: str | None = field(
        default=None,
        metadata={"help": "a run folder (its newest checkpoint) or checkpoint whose trained weights "
                          "are loaded into --model, built with the run's --lora_r / --train_last_layers"},
    )  # fmt: skip
    premise: bool = field(
        default=False,
        metadata={"help": "decode under the correct- and the wrong-answer instruction and write "
                          "premise.json: accuracy under each and the share of identical answers"},
    )  # fmt: skip

    def __post_init__(self) -> None:
        if self.split not in ("train", "validation", "test"):
            raise HIRError(f"--split must be train, validation or test, got {self.split!r}")
        for name in ("batch_size", "max_new_tokens", "limit"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise HIRError(f"--{name} must be >= 1, got {value}")
        if self.premise and self.instruction is not None:
            raise HIRError(
                "--premise decodes under the task's two instructions: leave --instruction out"
            )


def run_eval(args: list[str]) -> None:
    from dataclasses import asdict

    from transformers import set_seed

    from hir.arguments import ModelArguments, TaskArguments
    from hir.online.evaluate import evaluate, write_evaluation
    from hir.runs.folders import check_folder, mark_folder

    eval_args, model_args, task_args = option_parser("hir eval", EvalArguments, ModelArguments,
                                               TaskArguments).parse(args)  # fmt: skip
    set_seed(eval_args.seed)
    task = task_args.load()
    if not task.split(eval_args.split):
        raise HIRError(f"task {task.name} has no {eval_args.split} examples")
    # Before the slow part: an evaluation is written nowhere else, and where it can be written.
    check_folder(eval_args.output_dir, "evaluation")
    checkpoint = None
    if eval_args.run:  # found (or refused) before the slow model load
        from hir.recipes.export import checkpoint_of

        checkpoint = checkpoint_of(eval_args.run)
    policy = model_args.load_policy(device=eval_args.device)
    if checkpoint is not None:
        policy.load_weights(checkpoint)
    mark_folder(eval_args.output_dir, "evaluation", "hir eval")  # all checked: it will be written
    if eval_args.premise:
        return _write_premise(policy, task, eval_args, model_args)
    result = evaluate(policy, task, split=eval_args.split, instruction=eval_args.instruction,
                      batch_size=eval_args.batch_size, max_new_tokens=eval_args.max_new_tokens,
                      limit=eval_args.limit, progress=f"{task.name}: answering")  # fmt: skip
    config = {
        **asdict(eval_args),
        **asdict(model_args),
        **asdict(task_args),
        "task_name": task.name,
    }
    summary = write_evaluation(result, eval_args.output_dir, config)
    print(f"{task.name} [{eval_args.split}] model={model_args.model}: accuracy {result.accuracy:.4f} "
          f"({result.num_examples} examples, {result.wall_seconds:.1f}s); wrote {summary}")  # fmt: skip
    for name, value in result.task_metrics.items():
        print(f"  {name}: {value:.2f}")


def _write_premise(policy, task, eval_args, model_args) -> None:
    from dataclasses import asdict

    from hir.recipes.premise import measure_premise
    from hir.runs.fileio import atomic_write_json
    from hir.runs.folders import PREMISE
    from hir.runs.versions import library_versions

    row = measure_premise(policy, task, eval_args.split, eval_args.max_new_tokens, eval_args.limit)
    path = Path(eval_args.output_dir) / PREMISE
    atomic_write_json(path, {**row, "config": {**asdict(eval_args), **asdict(model_args)},
                             "versions": library_versions()})  # fmt: skip
    print(f"{task.name} [{eval_args.split}] model={model_args.model}: accuracy "
          f"{row['accuracy_correct_instruction']:.3f} under the correct-answer instruction, "
          f"{row['accuracy_wrong_instruction']:.3f} under the wrong-answer one, same answer "
          f"{row['same_answer_share']:.3f} ({row['examples']} examples); wrote {path}")  # fmt: skip
