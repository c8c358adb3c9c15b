"""`hir screen`: before training, will relabeling work on this model and these tasks?"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from hir.commands import option_parser
from hir.errors import HIRError


@dataclass
class ScreenArguments:
    tasks: str = field(
        default="",
        metadata={"help": "comma-separated task names; 'paper' names the paper's twelve BIG-bench "
                          "tasks, 'synthetic' the synthetic ones"},
    )  # fmt: skip
    output_dir: str | None = field(
        default=None, metadata={"help": "where screen.json and screen.md go (default: results/screen-<model>)"}
    )  # fmt: skip
    device: str = field(default="auto", metadata={"help": "cpu, cuda, cuda:1, ... (default: cuda if present)"})  # fmt: skip
    run: str | None = field(
        default=None,
        metadata={"help": "screen a trained run: its newest checkpoint (or the checkpoint named) "
                          "loaded into --model, built with the run's --lora_r / --train_last_layers"},
    )  # fmt: skip


def run_screen(args: list[str]) -> None:
    from hir.arguments import ModelArguments, TaskArguments
    from hir.recipes.screen import ScreenSettings, screen, screen_table, tasks_to_screen
    from hir.runs.folders import SCREEN, SCREEN_MD, check_folder, mark_folder
    from hir.tasks import Task

    screen_args, settings, model_args, task_args = option_parser(
        "hir screen", ScreenArguments, ScreenSettings, ModelArguments, TaskArguments,
        description="Before training: greedy accuracy under both instructions, pass@k and "
                    "well-formed samples at the sampling settings, the instructions' log-prob "
                    "margin on the model's own samples, the constant-answer baseline; one "
                    "reading per task.",
    ).parse(args)  # fmt: skip
    if not screen_args.tasks or not model_args.model:
        raise HIRError("hir screen needs --model and --tasks (e.g. --tasks paper,synthetic)")
    if task_args.validation_fraction is None:
        task_args = dataclasses.replace(task_args, validation_fraction=0.2)
    shuffle_seed = task_args.shuffle_options
    task_args = dataclasses.replace(task_args, shuffle_options=None)

    def load(name: str, shuffle: int | None) -> Task:
        return dataclasses.replace(task_args, task=name, shuffle_options=shuffle).load()

    # Loaded before the (slow) model, so that a wrong name fails at once.
    names, tasks = tasks_to_screen(screen_args.tasks, load, settings, shuffle_seed)
    checkpoint = None
    if screen_args.run:  # found (or refused) before the slow model load
        from hir.recipes.export import checkpoint_of

        checkpoint = checkpoint_of(screen_args.run)
    model_name = Path(model_args.model.rstrip("/")).name.removesuffix(".gguf")
    output_dir = screen_args.output_dir or f"results/screen-{model_name.lower()}"
    check_folder(output_dir, "screen")  # before the slow part: a screen is written nowhere else
    policy = model_args.load_policy(device=screen_args.device)
    if checkpoint is not None:
        policy.load_weights(checkpoint)
    mark_folder(output_dir, "screen", "hir screen")  # all checked: it will be written
    record = {"model": model_args.model, "run": str(checkpoint) if checkpoint else None,
              "tasks": names, "shuffle_options": shuffle_seed,
              "model_arguments": dataclasses.asdict(model_args),
              "task_arguments": dataclasses.asdict(task_args)}  # fmt: skip
    rows = screen(policy, tasks, settings, output_dir, record)
    print(screen_table(rows, settings.num_samples))
    print(f"wrote {Path(output_dir) / SCREEN} and {SCREEN_MD}")
