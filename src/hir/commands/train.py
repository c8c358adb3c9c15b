"""`hir train` (one method) and `hir instructgpt` (the InstructGPT pipeline)."""

from __future__ import annotations

from hir.commands import option_parser
from hir.errors import HIRError


def run_train(args: list[str]) -> None:
    from hir.arguments import ModelArguments, TaskArguments
    from hir.options import pop_option
    from hir.trainers import METHODS, get_method

    method = pop_option(args, "method") or "hir"
    trainer_class, config_class = get_method(method)
    parser = option_parser(f"hir train --method {method}", ModelArguments, TaskArguments, config_class,
                     description=f"{config_class.__doc__}\n\n--method: one of {', '.join(METHODS)}")  # fmt: skip
    model_args, task_args, config = parser.parse(args)
    task = task_args.load()
    summary = trainer_class(model_args.load_policy(), task, config).train()
    print(f"{summary['task']}: accuracy {summary['initial_accuracy']:.3f} -> {summary['final_accuracy']:.3f} "
          f"after {summary['iterations']} iterations ({summary['wall_seconds']:.0f}s); "
          f"results in {config.output_dir}")  # fmt: skip


def run_instructgpt(args: list[str]) -> None:
    from hir.arguments import ModelArguments, TaskArguments
    from hir.options import pop_option
    from hir.recipes.instructgpt import FINAL_METHODS, InstructGPTStages
    from hir.recipes.instructgpt import run_instructgpt as pipeline
    from hir.trainers import get_method

    final = pop_option(args, "final_method") or "ppo-ptx"
    if final not in FINAL_METHODS:
        raise HIRError(f"unknown --final_method {final!r}: choose from {', '.join(FINAL_METHODS)}")
    registered, settings = FINAL_METHODS[final]
    config_class = get_method(registered)[1]
    parser = option_parser(f"hir instructgpt --final_method {final}", ModelArguments, TaskArguments,
                     InstructGPTStages, config_class,
                     description=f"SFT on the labels -> reward model -> {final} against it "
                                 f"(--final_method: one of {', '.join(FINAL_METHODS)})")  # fmt: skip
    model_args, task_args, stages, config = parser.parse(
        args, {**settings, "output_dir": "runs/instructgpt"}
    )
    summary = pipeline(model_args.load_policy(), task_args.load(), config, stages)
    print(f"{summary['task']}: start {summary['initial_accuracy']:.3f}, SFT {summary['sft_accuracy']:.3f}, "
          f"{final} {summary['final_accuracy']:.3f}; results in {config.output_dir}")  # fmt: skip
