"""`hir tasks list` and `hir tasks export TASK`: the built-in tasks, and a task's prompts as JSONL."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field

from hir.commands import option_parser
from hir.errors import HIRError


@dataclass
class TasksExportArguments:
    split: str = field(default="train", metadata={"help": "train, validation or test"})
    instruction: str | None = field(default=None, metadata={"help": "instruction to render (default: the correct-answer one)"})  # fmt: skip
    output: str | None = field(default=None, metadata={"help": "file to write (default: standard output)"})  # fmt: skip


def run_tasks(args: list[str]) -> None:
    action = args[0] if args else ""
    if action == "list":
        return run_tasks_list()
    if action == "export":
        return run_tasks_export(args[1:])
    raise HIRError("hir tasks needs an action: `hir tasks list` or `hir tasks export TASK`")


def run_tasks_list() -> None:
    from hir.tasks import list_tasks

    tasks = list_tasks()
    width = max(map(len, tasks))
    for name, description in tasks.items():
        print(f"{name:<{width}}  {description}")
    print(
        "\nAlso: jsonl:<file> and hf:<dataset> (columns 'query' and 'answer', see --query_field)."
    )


def run_tasks_export(args: list[str]) -> None:
    from hir.arguments import TaskArguments
    from hir.runs.fileio import atomic_write_text, require_writable_file

    if args and not args[0].startswith("-"):
        args = ["--task", *args]  # `hir tasks export TASK`
    export, task_args = option_parser(
        "hir tasks export", TasksExportArguments, TaskArguments
    ).parse(args)
    if export.output:
        require_writable_file(export.output)  # before the task is read
    task = task_args.load()
    lines = []
    for example in task.split(export.split):
        row = {"id": example.id, "prompt": task.prompt(example.query, export.instruction),
               "target": example.target}  # fmt: skip
        if example.accepted:
            row["accepted"] = list(example.accepted)
        lines.append(json.dumps(row, ensure_ascii=False))
    text = "".join(line + "\n" for line in lines)
    if export.output:
        atomic_write_text(export.output, text)
        print(f"wrote {len(lines)} examples of {task.name} ({export.split}) to {export.output}",
              file=sys.stderr)  # fmt: skip
    else:
        sys.stdout.write(text)
