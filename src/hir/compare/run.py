"""`hir compare`: several methods on the same task, starting policy, sampling budget and seeds,
each run in its own folder (`METHOD/seed-N`), then one table and two plots
(`hir.compare.table`). What can be compared, and how the methods' configs are made:
`hir.compare.methods`. A comparison resumes, and several processes can share one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from accelerate import PartialState
from accelerate.utils import broadcast_object_list

from hir.arguments import ModelArguments
from hir.compare.final_evaluation import FOLDER as FINAL_EVALUATION
from hir.compare.final_evaluation import FinalEvaluation, final_evaluation
from hir.compare.methods import method_variant, start_rows, variant_base
from hir.compare.statistics import write_paired_evaluation
from hir.compare.table import run_wall_seconds, summarize, write_comparison
from hir.compare.transfer import screen_run, transfer_settings
from hir.errors import HIRError
from hir.online.evaluate import evaluate_with_config
from hir.recipes.instructgpt import InstructGPTStages, instructgpt_start, run_final_method
from hir.runs.fileio import atomic_write_json, read_jsonl
from hir.runs.folders import (
    RUN_RECORD,
    TABLE_LOCK,
    RunFolder,
    check_folder,
    mark_folder,
    run_folder,
)
from hir.runs.lock import folder_lock, live_holder, unless_locked
from hir.runs.report import evaluated_records
from hir.tasks.base import Task
from hir.trainers import get_method
from hir.trainers.run_config import RunConfig

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


def run_comparison(
    configs: Mapping[str, RunConfig],
    seeds: list[int],
    start: StartFn,
    output_dir: str | Path,
    model_options: ModelArguments | None = None,
    instructgpt_stages: InstructGPTStages | None = None,
    screen_limit: int = 0,
    final_eval: FinalEvaluation | None = None,
) -> dict:
    """`configs`: each compared method's config, in table order ("start": the untouched
    starting policy, evaluated with its config's settings); `compare_configs` makes them from
    one mapping of settings. Each run gets its own seed and folder `output_dir/METHOD/seed-N`.
    `model_options`: how each run loads its start (prompt format, LoRA, trained layers).
    `instructgpt_stages`: the SFT and reward-model stages of the instructgpt-* methods, made once
    per seed in `output_dir/instructgpt-start/seed-N`. `screen_limit` > 0: each run's trained
    model (and the start) is screened on that many evaluated queries (`hir.compare.transfer`),
    the instructgpt-* rows excepted (their relabeling is not correct / wrong). `final_eval`:
    each run's final model (and the start) scored on another task's test split, with paired
    verdicts (`hir.compare.final_evaluation`).

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
    # Before any run: a folder of anything but a comparison is refused, and a comparison is
    # continued or started over only when asked.
    found = check_folder(output_dir, "comparison")
    if found is not None and not resume and not any(c.overwrite_output_dir for c in configs.values()):  # fmt: skip
        raise HIRError(
            f"--output_dir {output_dir} holds {found.description}: pass --resume to continue it, "
            "--overwrite_output_dir to start it over, or choose another --output_dir"
        )
    if resume and main:
        holder = live_holder(output_dir)
        if holder is not None:  # a comparison that starts over holds the whole folder
            raise HIRError(
                f"--output_dir {output_dir} is in use by a comparison that starts over (pid "
                f"{holder.get('pid')} on {holder.get('host')}, since {holder.get('started')}): "
                "wait for it to end, or choose another folder"
            )
    with contextlib.nullcontext() if resume or not main else folder_lock(output_dir):
        if main:
            mark_folder(output_dir, "comparison", "hir compare")
        return _run_comparison(configs, seeds, start, output_dir, resume, launch,
                               model_options or ModelArguments(),
                               instructgpt_stages or InstructGPTStages(), screen_limit,
                               final_eval)  # fmt: skip


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
    final_eval: FinalEvaluation | None = None,
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
                                   output_dir=str(run_folder(output_dir, method, seed)),
                                   overwrite_output_dir=not resume)  # fmt: skip

    def screen_trained(name: str, seed: int, task: Task, start_model: str) -> None:
        """The screen of a run's model: its final checkpoint, or the start for "start"."""
        folder = run_folder(output_dir, name, seed)
        record = {"model": start_model, "tasks": [task.name],
                  "model_arguments": dataclasses.asdict(model_options)}  # fmt: skip
        settings = transfer_settings(configs, screen_limit, seed)
        if screen_run(folder, task, settings, lambda: load_start(start_model), record,
                      trained=name != "start") is None:  # fmt: skip
            say(f"hir compare: {name}, seed {seed}: not screened (no intact checkpoint in "
                f"{folder / 'checkpoints'})")  # fmt: skip

    def evaluate_finally(name: str, seed: int, start_model: str) -> None:
        """The run's final model (the start for start rows) on `final_eval`'s test split."""
        if final_eval is None or not main or name.startswith(("instructgpt-", "start@")):
            return  # (a start@ row's model is the start's, scored once)
        folder = run_folder(output_dir, name, seed)
        record = {"model": start_model, "model_arguments": dataclasses.asdict(model_options)}
        # A start row may take another seed's evaluation of the same start (same weights).
        starts = sorted(folder.parent.glob("seed-*")) if name == "start" else []
        if final_evaluation(folder, final_eval, lambda: load_start(start_model), record,
                            trained=not name.startswith("start"),
                            same_as=[f for f in starts if f != folder]) is None:  # fmt: skip
            say(f"hir compare: {name}, seed {seed}: no final evaluation (no intact checkpoint "
                f"in {folder / 'checkpoints'})")  # fmt: skip

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
                shared = run_folder(output_dir, "instructgpt-start", seed)
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
            # A trained run's time is its trainer's clock, which counts across resumes; this
            # process's own time would count only what it ran after the last one.
            seconds = run_wall_seconds(
                {"history": history, "wall_seconds": time.perf_counter() - began}
            )
        return {"method": name, "seed": seed, "instruction": instruction,
                "final_accuracy": history[-1]["accuracy"],
                "final_mean_score": history[-1]["mean_score"], "wall_seconds": seconds,
                "peak_rss_mib": memory.peak_mib, "history": history}  # fmt: skip

    def finished_runs(row_names: list[str]) -> list[dict]:
        """The runs this process made; with `resume`, every finished run of the comparison in
        the folder (kept ones, other processes' too)."""
        if not resume or not main:
            return runs
        return [json.loads(path.read_text(encoding="utf-8"))
                for seed in seeds for name in row_names
                if (path := run_folder(output_dir, name, seed) / RUN_RECORD).is_file()]  # fmt: skip

    def write_table(row_names: list[str]) -> None:
        # One process at a time, each reading the runs as they are then: the last has them all.
        if not main:
            return
        # (processes sharing a comparison write it one at a time)
        with folder_lock(output_dir, name=TABLE_LOCK, wait=True):
            finished = finished_runs(row_names)
            if finished:
                write_comparison(output_dir, summarize(finished, row_names), finished, record)
            if final_eval is not None and any(
                (run_folder(output_dir, r["method"], r["seed"]) / FINAL_EVALUATION).is_dir()
                for r in finished
            ):
                write_paired_evaluation(output_dir, FINAL_EVALUATION, final_eval.metric)

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
            folder = run_folder(output_dir, name, seed)
            record_path = folder / RUN_RECORD
            with _main_locks(folder, launch) as holder:
                kept = _as_main_has_it(resume and record_path.is_file(), launch)
                try:
                    if holder is not None:
                        raise _HeldElsewhere(folder, holder)
                    if kept:  # (its record is read with the others by `finished_runs`)
                        say(f"hir compare: {name}, seed {seed}: finished before, kept")
                        if screened(name, start_instruction):
                            screen_trained(name, seed, task, start_model)
                        evaluate_finally(name, seed, start_model)
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
                evaluate_finally(name, seed, start_model)
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
    records = evaluated_records(read_jsonl(RunFolder(config.output_dir).metrics))
    return [{key: record[key] for key in EVALUATED_KEYS if key in record} for record in records]


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
