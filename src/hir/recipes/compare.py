"""`hir compare`: several methods on the same task, starting policy, sampling budget and seeds,
in one table (Markdown and CSV: final accuracy and mean score, mean ± std over seeds, wall time,
peak memory) and two plots (accuracy against iteration and against wall time).

Methods: "start" (the untouched starting policy), "hir", "farl", "sft", "ppo", "ppo-ptx" (PPO
plus gamma = 27.8 times the log-likelihood of the warm-up data, as InstructGPT), HIR ablations
"hir-no-contrastive", "hir-no-entropy", "hir-no-sub-output", "hir-no-label-smoothing", variants
"hir-sum-scores", "hir-balanced", "hir-contrast-first", and the InstructGPT pipeline ending in
each method against the same SFT model and reward model: "instructgpt-ppo-ptx",
"instructgpt-hir", "instructgpt-farl". Any of them takes settings of its own after "+":
"hir+contrastive_weight=10+balance_instructions=true".
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import psutil
from accelerate import PartialState
from accelerate.utils import broadcast_object_list

from hir.arguments import ModelArguments
from hir.errors import HIRError
from hir.recipes.instructgpt import (
    FINAL_METHODS,
    InstructGPTStages,
    instructgpt_start,
    run_final_method,
)
from hir.recipes.transfer import (
    screen_run,
    transfer_markdown,
    transfer_rows,
    transfer_settings,
)
from hir.runs.diagnostics import diagnostics_markdown, diagnostics_rows
from hir.runs.fileio import atomic_write_json, atomic_write_text, read_jsonl
from hir.runs.lock import folder_lock, live_holder, unless_locked
from hir.runs.report import evaluated_records, mean_and_std, plot_comparison
from hir.runs.versions import library_versions
from hir.tasks.base import Task
from hir.trainers import get_method
from hir.trainers.online import evaluate_with_config
from hir.trainers.online_config import RunConfig

# A compared method: a registered method, with config overrides for variants and ablations.
METHODS: dict[str, tuple[str, dict]] = {
    "hir": ("hir", {}),
    "farl": ("farl", {}),
    "sft": ("sft", {}),
    # What makes PPO and PPO-ptx, as the pipeline's final methods define them: PPO is without
    # the ptx term whatever the shared settings say (a YAML's ptx_coef is PPO-ptx's).
    "ppo": FINAL_METHODS["ppo"],
    "ppo-ptx": FINAL_METHODS["ppo-ptx"],
    "hir-no-contrastive": ("hir", {"contrastive_weight": 0.0}),
    "hir-no-entropy": ("hir", {"entropy_weight": 0.0}),
    "hir-no-sub-output": ("hir", {"sub_output_prob": 0.0}),
    "hir-no-label-smoothing": ("hir", {"label_smoothing": 0.0}),
    # For tuning the baselines' smoothing on the same budget as HIR's.
    "farl-no-label-smoothing": ("farl", {"label_smoothing": 0.0}),
    "sft-no-label-smoothing": ("sft", {"label_smoothing": 0.0}),
    # HIR with more of the update on its contrastive term (one option each).
    "hir-sum-scores": ("hir", {"contrastive_score": "sum"}),
    "hir-balanced": ("hir", {"balance_instructions": True}),
    "hir-contrast-first": ("hir", {"contrast_first_epochs": 1}),
    # Each distinct answer's items weigh the same within an instruction (against learning the
    # answer most of the right samples give).
    "hir-answer-balanced": ("hir", {"balance_answers": True}),
    "farl-answer-balanced": ("farl", {"balance_answers": True}),
    # The InstructGPT pipeline (SFT -> reward model -> the method against the reward model),
    # one SFT model and reward model per seed for all three (hir.recipes.instructgpt).
    **{f"instructgpt-{name}": method for name, method in FINAL_METHODS.items()},
}
# Any of the above with settings of its own: "hir+contrastive_weight=10+balance_instructions=true".
VARIANT_SEPARATOR = "+"
# A finished run's record in its folder, written last.
RUN_RECORD = "compare_run.json"
# Held while a table is written, so that processes sharing a comparison write one at a time.
TABLE_LOCK_NAME = ".hir.table.lock"
# What the comparison keeps of each evaluated iteration of a run.
EVALUATED_KEYS = ("iteration", "accuracy", "mean_score", "wall_seconds", "commonest_answer",
                  "commonest_answer_share")  # fmt: skip


@dataclass
class Start:
    """What every method of one seed starts from."""

    task: Task
    model: str  # folder or Hub id of the starting policy
    # (prompt, output) pairs the starting policy was trained on: PPO-ptx's "pretraining" data
    pretraining_pairs: Sequence[tuple[str, str]] = ()


StartFn = Callable[[int], Start]  # seed -> Start


def parse_methods(text: str) -> list[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in methods if m != "start" and variant_base(m) not in METHODS]
    if unknown or not methods:
        raise HIRError(
            f"unknown method(s) {', '.join(unknown) or '(none)'}: choose from start, {', '.join(METHODS)}"
            f" (with settings of its own: METHOD{VARIANT_SEPARATOR}field=value)"
        )
    for method in methods:
        if method != "start":
            method_variant(method)  # a bad setting fails here, before any run
    repeated = sorted({m for m in methods if methods.count(m) > 1})
    if repeated:
        raise HIRError(
            f"--methods names {', '.join(repeated)} more than once: name each method once"
        )
    return methods


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(seed) for seed in text.split(",") if seed.strip()]
    except ValueError as exc:
        raise HIRError(f"--seeds must be comma-separated integers, got {text!r}") from exc
    if not seeds:
        raise HIRError("--seeds names no seed")
    if len(set(seeds)) < len(seeds):
        raise HIRError(
            f"--seeds {text} repeats a seed: a repeated run would count twice in the mean"
        )
    return seeds


def variant_base(method: str) -> str:
    """ "hir-balanced+contrastive_weight=10" -> "hir-balanced"."""
    return method.split(VARIANT_SEPARATOR, 1)[0]


def method_variant(method: str) -> tuple[str, dict[str, Any]]:
    """(registered method, config overrides) of a compared method: a name of `METHODS`,
    optionally followed by its own settings, each `+field=value` (values read as the field's
    flag would read them)."""
    from hir.options import OptionParser

    base, *settings = method.split(VARIANT_SEPARATOR)
    registered, overrides = METHODS[base]
    if not settings:
        return registered, overrides
    pairs = [setting.partition("=") for setting in settings]
    if any(not name or not equals for name, equals, _ in pairs):
        raise HIRError(
            f"method {method!r}: each setting after {VARIANT_SEPARATOR!r} must be field=value, "
            f"e.g. hir{VARIANT_SEPARATOR}contrastive_weight=10"
        )
    config_class = get_method(registered)[1]
    parser = OptionParser([config_class], prog=f"hir compare (method {method})")
    (parsed,) = parser.parse([part for name, _, value in pairs for part in (f"--{name}", value)])
    names = [name.replace("-", "_") for name, _, _ in pairs]
    return registered, {**overrides, **{name: getattr(parsed, name) for name in names}}


def config_class_of(method: str) -> type[RunConfig]:
    """The config a compared method is set by: its registered method's (`RunConfig` for the
    untrained start, which is only evaluated)."""
    return RunConfig if method == "start" else get_method(method_variant(method)[0])[1]


def compare_configs(methods: Sequence[str], settings: Mapping[str, Any]) -> dict[str, RunConfig]:
    """Each method's config: the `settings` its config declares, then its variant's overrides
    (e.g. ppo-ptx's ptx_coef), its own defaults for the rest. A setting that no method
    declares (a typo) is refused."""
    declared = {f.name for m in ("start", *METHODS) for f in fields(config_class_of(m))}
    unknown = sorted(set(settings) - declared)
    if unknown:
        raise HIRError(f"no method has the setting(s) {', '.join(unknown)}")
    configs = {}
    for method in methods:
        config_class = config_class_of(method)
        own = {f.name for f in fields(config_class)}
        given = config_class(**{k: v for k, v in settings.items() if k in own})
        configs[method] = as_variant(method, given)
    return configs


def as_variant(method: str, config: RunConfig) -> RunConfig:
    """`config` with what defines the compared method applied (e.g. ppo-ptx's ptx_coef)."""
    return config if method == "start" else dataclasses.replace(config, **method_variant(method)[1])


def start_rows(configs: Mapping[str, RunConfig], task: Task) -> list[tuple[str, str]]:
    """(row name, instruction) of the start's rows: one per instruction that the compared
    methods evaluate under (HIR with quantile relabeling asks for its top bucket, FARL for a
    correct answer), so that each method's iteration 0 equals the start row under its
    instruction. "start" is the correct-answer instruction's row (or the only one); another is
    "start@METHOD", after the first method that evaluates under it."""
    correct = configs["start"].correct_instruction or task.correct_instruction
    instructions = {}
    for method in (m for m in configs if m != "start"):
        trainer_class = get_method(method_variant(method)[0])[0]
        instructions.setdefault(trainer_class.evaluation_instruction(configs[method], task), method)
    others = [(f"start@{method}", instruction) for instruction, method in instructions.items()
              if instruction != correct]  # fmt: skip
    if correct in instructions or not instructions:
        return [("start", correct), *others]
    return [("start", others[0][1]), *others[1:]]


def run_comparison(
    configs: Mapping[str, RunConfig],
    seeds: list[int],
    start: StartFn,
    output_dir: str | Path,
    model_options: ModelArguments | None = None,
    instructgpt_stages: InstructGPTStages | None = None,
    screen_limit: int = 0,
) -> dict:
    """`configs`: each compared method's config, in table order ("start": the untouched
    starting policy, evaluated with its config's settings); `compare_configs` makes them from
    one mapping of settings. Each run gets its own seed and folder `output_dir/METHOD/seed-N`.
    `model_options`: how each run loads its start (prompt format, LoRA, trained layers).
    `instructgpt_stages`: the SFT and reward-model stages of the instructgpt-* methods, made once
    per seed in `output_dir/instructgpt-start/seed-N`. `screen_limit` > 0: each run's trained
    model (and the start) is screened on that many evaluated queries (`hir.recipes.transfer`),
    the instructgpt-* rows excepted (their relabeling is not correct / wrong).

    When the configs say `resume`, runs that finished are read back, not run again, and an
    interrupted run continues from its last checkpoint. The table is rewritten after every
    run, so a long comparison shows its results as they come.

    Without `resume` the comparison starts over and holds the whole folder. With it, several
    processes (or machines sharing the folder) may run the same comparison at once: each run
    is done by the process that takes its folder's lock first, the others go on to the next,
    and each process's table covers every run finished so far (the last to end has them all).
    Under `accelerate launch` the processes of one launch run each run together; their main
    process takes the locks, decides for all of them, and writes the records and the table."""
    output_dir = Path(output_dir)
    resume = any(config.resume for config in configs.values())
    launch = _launch_of(configs)
    main = launch is None or launch.is_main_process  # the process that writes
    if resume and main:
        holder = live_holder(output_dir)
        if holder is not None:  # a comparison that starts over holds the whole folder
            raise HIRError(
                f"--output_dir {output_dir} is in use by a comparison that starts over (pid "
                f"{holder.get('pid')} on {holder.get('host')}, since {holder.get('started')}): "
                "wait for it to end, or choose another folder"
            )
    with contextlib.nullcontext() if resume or not main else folder_lock(output_dir):
        return _run_comparison(configs, seeds, start, output_dir, resume, launch,
                               model_options or ModelArguments(),
                               instructgpt_stages or InstructGPTStages(), screen_limit)  # fmt: skip


def _launch_of(configs: Mapping[str, RunConfig]) -> PartialState | None:
    """The processes of an `accelerate launch`; None for one process (nothing to agree on, and
    no accelerate state made before the trainers make theirs)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    return PartialState(cpu=any(config.device == "cpu" for config in configs.values()))


def _as_main_has_it(value: Any, launch: PartialState | None) -> Any:
    """`value` as the main process has it, on every process of a launch (so that all of them
    skip, keep or run the same rows)."""
    if launch is None:
        return value
    box = [value]
    broadcast_object_list(box, from_process=0)
    return box[0]


@contextlib.contextmanager
def _main_locks(folder: Path, launch: PartialState | None) -> Iterator[dict | None]:
    """`unless_locked(folder)` on the main process; every process of a launch gets its answer."""
    main = launch is None or launch.is_main_process
    with unless_locked(folder) if main else contextlib.nullcontext() as holder:
        yield _as_main_has_it(holder, launch)


class _HeldElsewhere(Exception):
    """A folder that a run needs is held by another live process (`holder`)."""

    def __init__(self, folder: Path, holder: dict):
        super().__init__(folder)
        self.folder, self.holder = folder, holder


def _run_comparison(
    configs, seeds, start, output_dir: Path, resume: bool, launch: PartialState | None,
    model_options: ModelArguments,
    instructgpt_stages: InstructGPTStages, screen_limit: int,
) -> dict:  # fmt: skip
    methods = list(configs)
    main = launch is None or launch.is_main_process

    def say(line: str) -> None:
        if main:
            print(line)

    def load_start(model: str):
        return dataclasses.replace(model_options, model=str(model)).load_policy()

    def run_config(method: str, seed: int) -> RunConfig:
        return dataclasses.replace(configs[method], seed=seed, resume=resume,
                                   output_dir=str(output_dir / method / f"seed-{seed}"),
                                   overwrite_output_dir=not resume)  # fmt: skip

    def screen_trained(name: str, seed: int, task: Task, start_model: str) -> None:
        """The screen of a run's model: its final checkpoint, or the start for "start"."""
        folder = output_dir / name / f"seed-{seed}"
        record = {"model": start_model, "tasks": [task.name],
                  "model_arguments": dataclasses.asdict(model_options)}  # fmt: skip
        settings = transfer_settings(configs, screen_limit, seed)
        if screen_run(folder, task, settings, lambda: load_start(start_model), record,
                      trained=name != "start") is None:  # fmt: skip
            say(f"hir compare: {name}, seed {seed}: not screened (no intact checkpoint in "
                f"{folder / 'checkpoints'})")  # fmt: skip

    def screened(name: str, start_instruction: str | None) -> bool:
        """Rows screened under `screen_limit` (by the main process): the first start row and
        every trained one but the instructgpt-* ones."""
        if not screen_limit or not main or name.startswith("instructgpt-"):
            return False
        return name == "start" or start_instruction is None

    def run_row(name: str, start_instruction: str | None, seed: int, begin: Start,
                row_names: list[str]) -> dict | None:  # fmt: skip
        """Run one row (or evaluate the start) and return its record (None on the processes
        but the main one of a launch, which evaluates the start alone)."""
        task, start_model = begin.task, begin.model
        with PeakMemory() as memory:
            began = time.perf_counter()
            if start_instruction is not None:
                if not main:
                    return None
                # The same evaluation (split, limit, batch size, instruction, success rule)
                # as the iteration 0 of the methods evaluated under this instruction.
                instruction = start_instruction
                result = evaluate_with_config(
                    load_start(start_model), task, configs["start"], instruction
                )
                evaluated = {"iteration": 0, **result.metrics(), "wall_seconds": 0.0}
                history = [{key: evaluated[key] for key in EVALUATED_KEYS}]
            elif name.startswith("instructgpt-"):
                config = run_config(name, seed)
                shared = output_dir / "instructgpt-start" / f"seed-{seed}"
                # The first instructgpt-* method of a seed makes the start, the others reuse it.
                reuse = resume or any(
                    m.startswith("instructgpt-") for m in row_names[: row_names.index(name)]
                )
                with _main_locks(shared, launch) as holder:  # one launch makes a seed's stages
                    if holder is not None:
                        raise _HeldElsewhere(shared, holder)
                    pipeline = instructgpt_start(load_start(start_model), task, config, shared,
                                                 instructgpt_stages, reuse=reuse)  # fmt: skip
                instruction = get_method(method_variant(name)[0])[0].evaluation_instruction(
                    config, task
                )
                run_final_method(pipeline, task, config)
                history = _evaluated_history(config)
            else:
                trainer_class = get_method(method_variant(name)[0])[0]
                config = run_config(name, seed)
                is_ptx = variant_base(name) == "ppo-ptx"
                extra = {"ptx_pairs": begin.pretraining_pairs} if is_ptx else {}
                trainer = trainer_class(load_start(start_model), task, config, **extra)
                instruction = trainer.target_instruction
                trainer.train()
                history = _evaluated_history(config)
            seconds = time.perf_counter() - began
        return {"method": name, "seed": seed, "instruction": instruction,
                "final_accuracy": history[-1]["accuracy"],
                "final_mean_score": history[-1]["mean_score"], "wall_seconds": seconds,
                "peak_rss_mib": memory.peak_mib, "history": history}  # fmt: skip

    def finished_runs(row_names: list[str]) -> list[dict]:
        """This process's runs; with `resume`, every finished run of the comparison in the
        folder, other processes' too."""
        if not resume or not main:
            return runs
        return [json.loads(path.read_text(encoding="utf-8"))
                for seed in seeds for name in row_names
                if (path := output_dir / name / f"seed-{seed}" / RUN_RECORD).is_file()]  # fmt: skip

    def write_table(row_names: list[str]) -> None:
        # One process at a time, each reading the runs as they are then: the last has them all.
        if not main:
            return
        with folder_lock(output_dir, name=TABLE_LOCK_NAME, wait=True):
            finished = finished_runs(row_names)
            if finished:
                write_comparison(output_dir, summarize(finished, row_names), finished, record)

    for method in methods:  # every config is checked before anything runs
        run_config(method, seeds[0])
    runs: list[dict] = []
    left_to_others: list[str] = []
    record = {"model": model_options.model or None, "task": None, "seeds": seeds,
              "methods": {m: configs[m].to_dict() for m in methods}}  # fmt: skip
    table_is_current = False  # rewritten after each new run; once at the end if the last was kept
    row_names: list[str] = []
    for seed in seeds:
        begin = start(seed)
        task, start_model = begin.task, begin.model
        record.update(task=task.name, model=record["model"] or start_model)
        if any(variant_base(m) == "ppo-ptx" for m in methods) and not begin.pretraining_pairs:
            raise HIRError(
                "ppo-ptx needs the starting policy's supervised data for its ptx term: "
                "use --warm-start or --demo, or leave ppo-ptx out"
            )
        rows = [(method, None) for method in methods if method != "start"]
        if "start" in methods:
            starts = start_rows(configs, task)
            record["start_rows"] = dict(starts)
            at = methods.index("start")
            rows[at:at] = starts
        row_names = [name for name, _ in rows]
        for name, start_instruction in rows:
            folder = output_dir / name / f"seed-{seed}"
            record_path = folder / RUN_RECORD
            with _main_locks(folder, launch) as holder:
                kept = _as_main_has_it(resume and record_path.is_file(), launch)
                try:
                    if holder is not None:
                        raise _HeldElsewhere(folder, holder)
                    if kept:
                        say(f"hir compare: {name}, seed {seed}: finished before, kept")
                        if main:
                            runs.append(json.loads(record_path.read_text(encoding="utf-8")))
                        if screened(name, start_instruction):
                            screen_trained(name, seed, task, start_model)
                        table_is_current = False
                        continue
                    say(f"hir compare: {name}, seed {seed}")
                    run = run_row(name, start_instruction, seed, begin, row_names)
                except _HeldElsewhere as held:
                    say(f"hir compare: {name}, seed {seed}: left to process "
                        f"{held.holder.get('pid')} on {held.holder.get('host')}, which holds "
                        f"{held.folder}")  # fmt: skip
                    left_to_others.append(f"{name} seed {seed}")
                    continue
                if main:
                    atomic_write_json(record_path, run)  # written last: the run is finished
                    runs.append(run)
                if screened(name, start_instruction):
                    screen_trained(name, seed, task, start_model)
            write_table(row_names)
            table_is_current = True
    if not table_is_current:
        write_table(row_names)
    if launch is not None:  # no process leaves while the main one writes (gloo aborts on that)
        launch.wait_for_everyone()
    finished = finished_runs(row_names)
    if left_to_others:
        say(f"hir compare: {len(left_to_others)} run(s) left to other processes "
            f"({', '.join(left_to_others)}); the table has the runs finished so far, and the "
            "last process to end writes it whole")  # fmt: skip
    return {"table": summarize(finished, row_names), "runs": finished}


def _evaluated_history(config: RunConfig) -> list[dict]:
    """A finished run's evaluated iterations, as the comparison keeps them (runs logged before
    the commonest answer was lack it)."""
    records = evaluated_records(read_jsonl(Path(config.output_dir) / "metrics.jsonl"))
    return [{key: record[key] for key in EVALUATED_KEYS if key in record} for record in records]


def summarize(runs: list[dict], methods: list[str]) -> list[dict]:
    rows = []
    for method in methods:
        mine = [r for r in runs if r["method"] == method]
        if not mine:
            continue
        accuracy_mean, accuracy_std = mean_and_std([r["final_accuracy"] for r in mine])
        score_mean, score_std = mean_and_std(
            [r.get("final_mean_score", r["final_accuracy"]) for r in mine]
        )
        rows.append({
            "method": method,
            "seeds": len(mine),
            "accuracy_mean": accuracy_mean,
            "accuracy_std": accuracy_std,
            "mean_score_mean": score_mean,
            "mean_score_std": score_std,
            "wall_seconds_mean": statistics.mean(run_wall_seconds(r) for r in mine),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in mine),
            "instruction": mine[0].get("instruction", ""),
        })  # fmt: skip
    return rows


def run_wall_seconds(run: dict) -> float:
    """A trained run's own clock, which a resumed run continues (the process that resumed it
    saw only the rest); for the start row, the time of its evaluation."""
    history = run.get("history", [])
    return history[-1]["wall_seconds"] if len(history) > 1 else run["wall_seconds"]


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| method | final accuracy (mean ± std) | final mean score (mean ± std) | seeds | "
        "wall time (s, mean) | peak RSS (MiB) | evaluated under |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['accuracy_mean']:.3f} ± {r['accuracy_std']:.3f} | "
            f"{r['mean_score_mean']:.3f} ± {r['mean_score_std']:.3f} | {r['seeds']} | "
            f"{r['wall_seconds_mean']:.0f} | {r['peak_rss_mib']:.0f} | {r.get('instruction', '')} |"
        )
    return "\n".join(lines)


def write_comparison(output_dir: Path, rows: list[dict], runs: list[dict], record: dict) -> None:
    """comparison.md / .csv (the table), comparison.json (what was compared: model, task,
    seeds, each method's config, the start rows' instructions; the table, every run, versions),
    diagnostics.md, the two plots, and transfer.md where runs were screened."""
    markdown = markdown_table(rows)
    transfer = transfer_rows(output_dir, runs, [r["method"] for r in rows])
    if transfer:
        atomic_write_text(output_dir / "transfer.md", transfer_markdown(transfer))
    atomic_write_text(output_dir / "comparison.md", markdown + "\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(output_dir / "comparison.csv", buffer.getvalue())
    atomic_write_json(output_dir / "comparison.json", {**record, "table": rows, "runs": runs,
                                                        "transfer": transfer,
                                                        "versions": library_versions()})  # fmt: skip
    plot_comparison(runs, output_dir)
    atomic_write_text(output_dir / "diagnostics.md", diagnostics_markdown(diagnostics_rows(training_histories(output_dir, runs))) + "\n")  # fmt: skip
    print(
        "\n"
        + markdown
        + f"\n\nwrote {output_dir / 'comparison.md'}, comparison.csv, diagnostics.md, accuracy_vs_iteration.png, accuracy_vs_wall_time.png"
        + (", transfer.md" if transfer else "")
    )


def training_histories(output_dir: Path, runs: list[dict]) -> dict[str, list[list[dict]]]:
    """Each trained method's full per-iteration logs (`metrics.jsonl`), one list per seed."""
    histories: dict[str, list[list[dict]]] = {}
    for run in runs:
        path = output_dir / run["method"] / f"seed-{run['seed']}" / "metrics.jsonl"
        if run["method"] != "start" and path.is_file():
            histories.setdefault(run["method"], []).append(list(read_jsonl(path)))
    return histories


class PeakMemory:
    """Peak resident memory of this process while the block runs, sampled every 0.1 s."""

    def __enter__(self) -> PeakMemory:
        self._process = psutil.Process()
        self.peak_mib = self._process.memory_info().rss / 2**20
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(0.1):
            self.peak_mib = max(self.peak_mib, self._process.memory_info().rss / 2**20)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mib = max(self.peak_mib, self._process.memory_info().rss / 2**20)
