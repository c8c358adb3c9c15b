"""`hir warm-up`: teach a model both instructions on other tasks."""

from __future__ import annotations

from dataclasses import dataclass, field

from hir.commands import option_parser
from hir.errors import HIRError


@dataclass
class WarmupArguments:
    tasks: str = field(default="", metadata={"help": "comma-separated warm-up tasks (never the target)"})  # fmt: skip
    targets: str = field(default="", metadata={"help": "comma-separated target tasks: premise measured on their validation split"})  # fmt: skip
    output_dir: str = field(default="", metadata={"help": "folder for the warmed-up model and warmup.json"})  # fmt: skip
    bigbench_dir: str | None = field(default=None, metadata={"help": "folder with BIG-bench task data"})  # fmt: skip
    validation_fraction: float = field(default=0.2, metadata={"help": "share of each task's train split held out for validation"})  # fmt: skip
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "replace a non-empty --output_dir (never done silently)"}
    )


def run_warmup(args: list[str]) -> None:
    from hir.arguments import ModelArguments
    from hir.recipes.warmup import WarmupSettings, instruction_warmup, premise_table
    from hir.runs.staging import check_target
    from hir.tasks import load_task

    warm, settings, model_args = option_parser("hir warm-up", WarmupArguments, WarmupSettings,
                                         ModelArguments).parse(args)  # fmt: skip
    if not warm.tasks or not warm.targets or not warm.output_dir or not model_args.model:
        raise HIRError("hir warm-up needs --model, --tasks, --targets and --output_dir")

    def load(names: str):
        return [load_task(n.strip(), bigbench_dir=warm.bigbench_dir,
                          validation_fraction=warm.validation_fraction) for n in names.split(",")]  # fmt: skip

    check_target(warm.output_dir, warm.overwrite_output_dir)  # before the slow part
    tasks, targets = load(warm.tasks), load(warm.targets)
    for kind, names in (("--tasks", warm.tasks), ("--targets", warm.targets)):
        listed = [n.strip() for n in names.split(",")]
        if len(set(listed)) < len(listed):
            raise HIRError(f"{kind} names a task more than once: name each once")
    record = instruction_warmup(model_args, tasks, targets, warm.output_dir, settings,
                                overwrite=warm.overwrite_output_dir)  # fmt: skip
    print(premise_table(record))
    print(f"wrote the warmed-up model to {warm.output_dir}")
