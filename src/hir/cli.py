"""The `hir` command. Each subcommand is a thin layer over the Python API."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hir.errors import HIRError


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # `hir train` takes HIRConfig's flags, parsed later by HfArgumentParser.
    args, extra = parser.parse_known_args(argv)
    if args.command in ("train", "compare", "instructgpt"):
        args.options = extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.handler(args) or 0
    except HIRError as exc:
        print(f"hir: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hir: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hir", description="Hindsight Instruction Relabeling for Hugging Face language models."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    tasks = commands.add_parser("tasks", help="list built-in tasks or export a task's prompts")
    task_commands = tasks.add_subparsers(dest="tasks_command", required=True, metavar="ACTION")
    listing = task_commands.add_parser("list", help="name every built-in task")
    listing.set_defaults(handler=run_tasks_list)
    export = task_commands.add_parser(
        "export", help="write a split's rendered prompts and targets as JSONL"
    )
    export.add_argument("task", help="task name, jsonl:<file> or hf:<dataset>")
    export.add_argument("--split", default="train", choices=["train", "validation", "test"])
    export.add_argument(
        "--instruction", help="instruction to render (default: the correct-answer one)"
    )
    export.add_argument("--output", "-o", help="file to write (default: standard output)")
    add_task_options(export)
    export.set_defaults(handler=run_tasks_export)

    evaluation = commands.add_parser(
        "eval", help="greedy accuracy of a model on a task's test split"
    )
    evaluation.add_argument("--model", required=True, help="Hub model id or local folder")
    evaluation.add_argument("--task", required=True, help="task name, jsonl:<file> or hf:<dataset>")
    evaluation.add_argument("--split", default="test", choices=["train", "validation", "test"])
    evaluation.add_argument(
        "--instruction", help="instruction to decode under (default: the correct-answer one)"
    )
    evaluation.add_argument(
        "--output-dir", default="outputs/eval", help="where predictions.jsonl and summary.json go"
    )
    evaluation.add_argument("--batch-size", type=int, default=32)
    evaluation.add_argument("--max-new-tokens", type=int, default=32)
    evaluation.add_argument("--limit", type=int, help="evaluate only the first N examples")
    evaluation.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda if present)"
    )
    evaluation.add_argument("--seed", type=int, default=0)
    add_task_options(evaluation)
    evaluation.set_defaults(handler=run_eval)

    build = commands.add_parser(
        "build-model",
        help="build a small untrained model with a tokenizer trained on a task's text",
    )
    build.add_argument("--arch", required=True, choices=["gpt2", "t5"])
    build.add_argument(
        "--task", required=True, help="task whose training text the tokenizer learns"
    )
    build.add_argument("--output-dir", required=True)
    build.add_argument("--size", default="tiny", choices=["tiny", "small", "base"])
    build.add_argument("--vocab-size", type=int, default=2000)
    build.add_argument("--seed", type=int, default=0)
    add_task_options(build)
    build.set_defaults(handler=run_build_model)

    train = commands.add_parser(
        "train",
        add_help=False,
        help="run HIR (--config run.yaml, every HIRConfig field also a flag; -h lists them)",
    )
    train.set_defaults(handler=run_train)

    instructgpt = commands.add_parser(
        "instructgpt",
        add_help=False,
        help="the InstructGPT baseline: SFT -> reward model -> PPO-ptx (PPOConfig flags)",
    )
    instructgpt.set_defaults(handler=run_instructgpt)

    compare = commands.add_parser(
        "compare",
        description="Run several methods on the same task, starting policy, sampling budget and seeds. "
        "Every HIRConfig field is also accepted as a flag (see `hir train -h`), e.g. --iterations 6.",
        help="several methods (HIR, FARL, SFT, ablations) on the same task, model, budget and seeds",
    )
    compare.add_argument(
        "--methods",
        default="start,hir,farl,ppo,sft",
        help="comma-separated: start, hir, farl, ppo, ppo-ptx, sft, hir-no-contrastive, "
        "hir-no-entropy, hir-no-sub-output, hir-no-label-smoothing",
    )
    compare.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    compare.add_argument(
        "--demo",
        action="store_true",
        help="on the built-in default: its task, warm-started model and settings",
    )
    compare.add_argument(
        "--warm-start",
        metavar="ARCH-SIZE",
        help="instead of --model: build a small model (gpt2-small, t5-tiny, ...) and warm it up on "
        "labeled training queries, which are then held out (as the built-in default does)",
    )
    compare.add_argument(
        "--warm-start-fraction",
        type=float,
        default=0.4,
        help="share of the training split used, with labels, by --warm-start",
    )
    compare.add_argument("--warm-start-epochs", type=int, default=6)
    compare.set_defaults(handler=run_compare)

    demo = commands.add_parser(
        "demo", help="the built-in default: a complete HIR run on CPU in about 5 minutes"
    )
    demo.add_argument("--output-dir", default="runs/demo")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--iterations", type=int, help="override the number of HIR iterations")
    demo.add_argument(
        "--report-to", default="tensorboard", help="tensorboard, wandb, mlflow or none"
    )
    demo.set_defaults(handler=run_demo)
    return parser


def add_task_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("task data")
    group.add_argument(
        "--bigbench-dir",
        help="folder with <task>/task.json (default: $HIR_BIGBENCH_DIR, else download once)",
    )
    group.add_argument("--no-download", action="store_true", help="never download BIG-bench data")
    group.add_argument(
        "--feedback",
        help="feedback function module:function or file.py:function, (output, example) -> float",
    )
    group.add_argument("--query-field", default="query", help="query column of user data")
    group.add_argument("--answer-field", default="answer", help="answer column of user data")
    group.add_argument(
        "--hf-split", default="train", help="split of a Hugging Face dataset to read"
    )
    group.add_argument("--num-examples", type=int, default=1000, help="size of a synthetic task")
    group.add_argument(
        "--data-seed", type=int, default=0, help="seed of a synthetic task's generator"
    )
    group.add_argument(
        "--split-seed", type=int, help="seed of the train/test permutation (protocol: 1)"
    )
    group.add_argument(
        "--validation-fraction", type=float, help="share of train held out for validation"
    )


def task_from_args(args: argparse.Namespace, spec: str | None = None):
    from hir.tasks import load_task

    return load_task(
        spec or args.task,
        bigbench_dir=args.bigbench_dir,
        download=not args.no_download,
        feedback=args.feedback,
        query_field=args.query_field,
        answer_field=args.answer_field,
        hf_split=args.hf_split,
        num_examples=args.num_examples,
        data_seed=args.data_seed,
        split_seed=args.split_seed,
        validation_fraction=args.validation_fraction,
    )


def run_tasks_list(args: argparse.Namespace) -> None:
    from hir.tasks import list_tasks

    tasks = list_tasks()
    width = max(map(len, tasks))
    for name, description in tasks.items():
        print(f"{name:<{width}}  {description}")
    print(
        "\nAlso: jsonl:<file> and hf:<dataset> (columns 'query' and 'answer', see --query-field)."
    )


def run_tasks_export(args: argparse.Namespace) -> None:
    task = task_from_args(args)
    lines = []
    for example in task.split(args.split):
        row = {
            "id": example.id,
            "prompt": task.prompt(example.query, args.instruction),
            "target": example.target,
        }
        if example.accepted:
            row["accepted"] = list(example.accepted)
        lines.append(json.dumps(row, ensure_ascii=False))
    text = "".join(line + "\n" for line in lines)
    if args.output:
        from hir.fileio import atomic_write_text

        atomic_write_text(args.output, text)
        print(
            f"wrote {len(lines)} examples of {task.name} ({args.split}) to {args.output}",
            file=sys.stderr,
        )
    else:
        sys.stdout.write(text)


def run_eval(args: argparse.Namespace) -> None:
    from transformers import set_seed

    from hir.evaluate import evaluate, write_evaluation
    from hir.models import load_policy

    set_seed(args.seed)
    task = task_from_args(args)
    policy = load_policy(args.model, device=args.device)
    result = evaluate(
        policy,
        task,
        split=args.split,
        instruction=args.instruction,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        limit=args.limit,
    )
    config = {k: v for k, v in vars(args).items() if k != "handler"}
    summary = write_evaluation(result, args.output_dir, {**config, "task_name": task.name})
    print(
        f"{task.name} [{args.split}] model={args.model}: accuracy {result.accuracy:.4f} "
        f"({result.num_examples} examples, {result.wall_seconds:.1f}s); wrote {summary}"
    )


def run_build_model(args: argparse.Namespace) -> None:
    from hir.small_models import build_small_model, task_corpus

    task = task_from_args(args)
    path = build_small_model(
        args.arch, task_corpus(task), args.output_dir, args.size, args.vocab_size, args.seed
    )
    print(f"built an untrained {args.size} {args.arch} for {task.name} in {Path(path)}")


def parse_train_config(options: list[str], defaults: dict | None = None, config_class=None):
    """HIRConfig from `--config run.yaml` overridden by flags (`--learning_rate 1e-4`);
    `defaults` replace HIRConfig's own defaults."""
    import yaml
    from transformers import HfArgumentParser

    from hir.trainers.hir_config import HIRConfig

    config_class = config_class or HIRConfig
    parser = HfArgumentParser(config_class, prog="hir train", description=config_class.__doc__)
    parser.add_argument("--config", help="YAML file of HIRConfig fields; flags override it")
    parser.set_defaults(**(defaults or {}))
    known, _ = parser.parse_known_args(options)
    if known.config:
        path = Path(known.config)
        if not path.is_file():
            raise HIRError(f"config file {known.config!r} does not exist")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise HIRError(f"{known.config} is not valid YAML: {str(exc).splitlines()[0]}") from exc
        fields = set(config_class.__dataclass_fields__)
        unknown = sorted(set(values) - fields)
        if unknown:
            raise HIRError(
                f"{known.config}: unknown field(s) {', '.join(unknown)}; see `hir train -h` for the fields"
            )
        parser.set_defaults(**values)
    config, _ = parser.parse_args_into_dataclasses(options)
    return config


TRAINERS = {"hir": "hir.trainers.hir_trainer:HIRTrainer", "farl": "hir.trainers.farl:FARLTrainer",
            "sft": "hir.trainers.sft:SFTTrainer", "ppo": "hir.trainers.ppo:PPOTrainer"}  # fmt: skip


def run_train(args: argparse.Namespace) -> None:
    import importlib

    from hir.trainers.ppo import PPOConfig

    method = "hir"
    if "--method" in args.options:
        at = args.options.index("--method")
        method = args.options[at + 1] if at + 1 < len(args.options) else ""
        args.options = args.options[:at] + args.options[at + 2 :]
    if method not in TRAINERS:
        raise HIRError(f"unknown --method {method!r}: choose from {', '.join(TRAINERS)}")
    module, _, name = TRAINERS[method].partition(":")
    trainer_class = getattr(importlib.import_module(module), name)
    config = parse_train_config(args.options, config_class=PPOConfig if method == "ppo" else None)
    summary = trainer_class(config.model, config.task, config).train()
    print(
        f"{summary['task']}: accuracy {summary['initial_accuracy']:.3f} -> {summary['final_accuracy']:.3f} "
        f"after {summary['iterations']} iterations ({summary['wall_seconds']:.0f}s); "
        f"results in {config.output_dir}"
    )


def run_demo(args: argparse.Namespace) -> None:
    from hir.demo import run_demo as demo

    demo(args.output_dir, seed=args.seed, iterations=args.iterations, report_to=args.report_to)


def run_compare(args: argparse.Namespace) -> None:
    from hir.compare import Start, parse_methods, run_comparison

    methods = parse_methods(args.methods)
    try:
        seeds = [int(seed) for seed in args.seeds.split(",") if seed.strip()]
    except ValueError as exc:
        raise HIRError(f"--seeds must be comma-separated integers, got {args.seeds!r}") from exc
    if args.demo:
        from hir.demo import DEMO_HIR, DEMO_TASK, prepare_start_policy

        defaults = {
            **DEMO_HIR,
            "task": DEMO_TASK,
            "output_dir": "runs/compare-demo",
            "report_to": "none",
        }
        base = parse_train_config(args.options, defaults)

        def start(seed: int) -> Start:
            begin = prepare_start_policy(Path(base.output_dir) / "start" / f"seed-{seed}", seed)
            return Start(begin.task, str(begin.model_dir), begin.pretraining_pairs)
    elif args.warm_start:
        from hir.trainers.hir_trainer import load_task_from_config
        from hir.warm_start import WarmStart, warm_start_from_split

        base = parse_train_config(args.options, {"output_dir": "runs/compare", "report_to": "none"})
        settings = WarmStart.parse(
            args.warm_start,
            labeled_fraction=args.warm_start_fraction,
            epochs=args.warm_start_epochs,
        )
        full_task = load_task_from_config(base.task, base)

        def start(seed: int) -> Start:
            folder = Path(base.output_dir) / "start" / f"seed-{seed}"
            task, model_dir, pairs = warm_start_from_split(full_task, folder, settings, seed)
            return Start(task, str(model_dir), pairs)
    else:
        from hir.trainers.hir_trainer import load_task_from_config

        base = parse_train_config(args.options, {"output_dir": "runs/compare", "report_to": "none"})
        if not base.model:
            raise HIRError(
                "no model given: set --model, or --warm-start ARCH-SIZE to build and warm up a "
                "small one, or --demo for the built-in default"
            )
        task = load_task_from_config(base.task, base)

        def start(seed: int) -> Start:
            return Start(task, base.model)

    run_comparison(base, methods, seeds, start, base.output_dir)


def run_instructgpt(args: argparse.Namespace) -> None:
    from hir.trainers.hir_trainer import load_task_from_config
    from hir.trainers.instructgpt import run_instructgpt as pipeline
    from hir.trainers.ppo import PPOConfig

    config = parse_train_config(
        args.options, {"ptx_coef": 27.8, "output_dir": "runs/instructgpt"}, config_class=PPOConfig
    )
    if not config.model:
        raise HIRError("no model given: set --model to a Hub id or a local folder")
    summary = pipeline(config.model, load_task_from_config(config.task, config), config)
    print(
        f"{summary['task']}: start {summary['initial_accuracy']:.3f}, SFT {summary['sft_accuracy']:.3f}, "
        f"PPO-ptx {summary['final_accuracy']:.3f}; results in {config.output_dir}"
    )
