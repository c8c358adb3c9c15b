"""`hir compare`: several methods side by side over seeds, or (`--status`) where such a
comparison stands."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from hir.commands import option_parser
from hir.errors import HIRError


@dataclass
class CompareArguments:
    methods: str = field(
        default="start,hir,farl,ppo,sft",
        metadata={"help": "comma-separated: start and the methods listed at the end of this help; "
                          "any with settings of its own: hir+contrastive_weight=10+contrast_first_epochs=1"},
    )  # fmt: skip
    seeds: str = field(default="0,1,2", metadata={"help": "comma-separated seeds"})
    demo: bool = field(
        default=False,
        metadata={"help": "on the built-in default: its task, warm-started model and settings"},
    )
    # "small start", not "warm start": a small model built here from scratch, then taught both
    # instructions (`hir warm-up` teaches a given model; warmup_steps is the schedule's).
    small_start: str | None = field(
        default=None,
        metadata={"aliases": ["--warm_start"],  # its earlier name, kept for users' scripts
                  "help": "ARCH-SIZE instead of --model: build a small model (gpt2-small, t5-tiny, "
                          "...) and warm it up on labeled training queries, which are then held out"},
    )  # fmt: skip
    small_start_fraction: float = field(
        default=0.4,
        metadata={"aliases": ["--warm_start_fraction"],
                  "help": "share of the training split used, with labels, by --small_start"},
    )  # fmt: skip
    small_start_epochs: int = field(
        default=6, metadata={"aliases": ["--warm_start_epochs"], "help": "epochs of the small start's warm-up"}
    )  # fmt: skip
    output_dir: str = field(
        default="runs/compare", metadata={"help": "folder of the table, plots and every run (METHOD/seed-N)"}
    )  # fmt: skip
    resume: bool = field(
        default=False,
        metadata={"help": "keep the runs that finished, continue an interrupted one from its checkpoint; "
                          "the same command in several processes shares the runs out"},
    )  # fmt: skip
    status: bool = field(
        default=False,
        metadata={"help": "print where the comparison in --output_dir stands (each run finished, running "
                          "and where, with its hours left at its pace so far; interrupted or not started) and exit; runs nothing"},
    )  # fmt: skip
    screen_trained: int = field(
        default=0,
        metadata={"help": "screen each trained model (and the start) on this many evaluated queries, "
                          "as `hir screen` does, into METHOD/seed-N/screen.json and transfer.md: does "
                          "the instructions' separation transfer? 0 = off"},
    )  # fmt: skip
    final_eval: str | None = field(
        default=None,
        metadata={"help": "score each finished run (and the start) on this task's test split into "
                          "METHOD/seed-N/final-eval/, with paired verdicts on --final_eval_metric "
                          "(e.g. ifeval, for a comparison trained on --task constraints)"},
    )  # fmt: skip
    final_eval_metric: str = field(
        default="accuracy",
        metadata={"help": "what the final evaluation's paired verdicts compare (IFEval: strict_mean)"},
    )  # fmt: skip
    final_eval_max_new_tokens: int = field(
        default=512, metadata={"help": "the final evaluation's longest answer"}
    )


def run_compare(args: list[str]) -> None:
    from hir.arguments import ModelArguments, TaskArguments
    from hir.compare.methods import parse_methods, parse_seeds
    from hir.compare.run import Start, run_comparison
    from hir.recipes.instructgpt import InstructGPTStages
    from hir.runs.folders import run_folder

    parser = option_parser("hir compare", CompareArguments, ModelArguments, TaskArguments, InstructGPTStages,
                     description="Several methods on the same task, starting policy, sampling "
                                 "budget and seeds; every method's config field is a flag.")  # fmt: skip
    if any(a in ("-h", "--help") for a in args):
        from hir.compare.methods import METHODS

        parser.print_help()
        print(
            f"\nMethods (--methods): start, {', '.join(METHODS)}.\n\nEvery field of a compared "
            "method's config is a flag too (and a YAML key): see `hir train --method METHOD -h`. "
            "Each method takes the ones it has."
        )
        return
    # Explicit settings: the command's defaults, then the YAML file, then the flags; each
    # method's config takes those of its fields that were given and keeps its own defaults.
    yaml_values = _yaml_of(args)
    given = {"report_to": "none"}
    if option_parser("hir compare", CompareArguments).parse_known(args, yaml_values)[0][0].demo:
        from hir.recipes.demo import DEMO_HIR, DEMO_TASK

        given.update(DEMO_HIR, task=DEMO_TASK, output_dir="runs/compare-demo")
    given.update(yaml_values)
    (compare_args, model_args, task_args, stages), rest = parser.parse_known(args, given)
    methods = parse_methods(compare_args.methods)
    seeds = parse_seeds(compare_args.seeds)
    if compare_args.status:
        from hir.compare.status import comparison_status, status_markdown

        rows = comparison_status(compare_args.output_dir, methods, seeds)
        print(status_markdown(rows, compare_args.output_dir))
        return
    if compare_args.screen_trained < 0:
        raise HIRError(
            f"--screen_trained must be >= 0 (0 = off), got {compare_args.screen_trained}"
        )
    configs = _method_configs(methods, rest, given, compare_args)
    output_dir = Path(compare_args.output_dir)
    final_eval = None
    if compare_args.final_eval:  # loaded and checked before any run
        from hir.compare.final_evaluation import FinalEvaluation

        final_task = dataclasses.replace(task_args, task=compare_args.final_eval).load()
        final_eval = FinalEvaluation(final_task, compare_args.final_eval,
                                     compare_args.final_eval_max_new_tokens,
                                     configs[methods[0]].eval_batch_size, compare_args.final_eval_metric)  # fmt: skip

    if compare_args.demo:
        from hir.recipes.demo import prepare_start_policy

        def start(seed: int) -> Start:
            begin = prepare_start_policy(run_folder(output_dir, "start", seed), seed)
            return Start(begin.task, str(begin.model_dir), begin.pretraining_pairs)
    elif compare_args.small_start:
        from hir.recipes.small_start import SmallStart, small_start_from_split

        warm = SmallStart.parse(compare_args.small_start, labeled_fraction=compare_args.small_start_fraction,
                               epochs=compare_args.small_start_epochs)  # fmt: skip
        full_task = task_args.load()

        def start(seed: int) -> Start:
            folder = run_folder(output_dir, "start", seed)
            task, model_dir, pairs = small_start_from_split(full_task, folder, warm, seed)
            return Start(task, str(model_dir), pairs)
    else:
        if not model_args.model:
            raise HIRError("no model given: set --model, or --small_start ARCH-SIZE to build and warm "
                           "up a small one, or --demo for the built-in default")  # fmt: skip
        task = task_args.load()

        def start(seed: int) -> Start:
            return Start(task, model_args.model)

    run_comparison(
        configs,
        seeds,
        start,
        output_dir,
        model_args,
        stages,
        screen_limit=compare_args.screen_trained,
        final_eval=final_eval,
    )


def _yaml_of(args: list[str]) -> dict:
    """The fields of `--config FILE`, checked against every field `hir compare` knows."""
    from dataclasses import fields

    from hir.arguments import ModelArguments, TaskArguments
    from hir.compare.methods import METHODS, config_class_of
    from hir.options import config_option, read_yaml_fields
    from hir.recipes.instructgpt import InstructGPTStages

    path = config_option(list(args))
    if not path:
        return {}
    classes = [CompareArguments, ModelArguments, TaskArguments, InstructGPTStages]
    classes += [config_class_of(m) for m in ("start", *METHODS)]
    return read_yaml_fields(path, {f.name for c in classes for f in fields(c)})


def _method_configs(methods: list[str], args: list[str], given: dict, compare_args) -> dict:
    """Each method's config from the flags and values it has a field for (its own defaults for
    the rest); a flag that no method has is refused."""
    from dataclasses import fields

    from hir.compare.methods import (
        METHODS,
        as_variant,
        config_class_of,
        require_one_sampling_budget,
    )

    known = {f.name for m in ("start", *METHODS) for f in fields(config_class_of(m))}
    configs = {}
    for method in methods:
        parser = option_parser(f"hir compare ({method})", config_class_of(method))
        (config,), rest = parser.parse_known(args, given)
        configs[method] = as_variant(method, dataclasses.replace(
            config, output_dir=compare_args.output_dir, resume=compare_args.resume))  # fmt: skip
        unknown = [a for a in rest if a.startswith("--")
                   and a[2:].partition("=")[0].replace("-", "_") not in known]  # fmt: skip
        if unknown:
            raise HIRError(f"unknown option(s) {' '.join(unknown)} (see `hir compare -h`)")
    flagged = any(a.split("=")[0] in ("--num_samples", "--num-samples") for a in args)
    require_one_sampling_budget(configs, explicit=flagged or "num_samples" in given)
    return configs
