"""`hir compare`: several methods on the same task, starting policy, sampling budget and seeds,
in one table (Markdown and CSV: final accuracy and mean score, mean ± std over seeds, wall time,
peak memory) and two plots (accuracy against iteration and against wall time).

Methods: "start" (the untouched starting policy), "hir", "farl", "sft", "ppo", "ppo-ptx" (PPO
plus gamma = 27.8 times the log-likelihood of the warm-up data, as InstructGPT), and HIR
ablations "hir-no-contrastive", "hir-no-entropy", "hir-no-sub-output", "hir-no-label-smoothing".
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import psutil

from hir.arguments import ModelArguments
from hir.diagnostics import diagnostics_markdown, diagnostics_rows
from hir.errors import HIRError
from hir.fileio import atomic_write_json, atomic_write_text, read_jsonl
from hir.report import evaluated_records, plot_comparison
from hir.runinfo import library_versions
from hir.tasks.base import Task
from hir.trainers import get_method
from hir.trainers.farl import FARLConfig
from hir.trainers.hir import HIRConfig
from hir.trainers.online import evaluate_with_config
from hir.trainers.online_config import RunConfig
from hir.trainers.ppo import PPOConfig
from hir.trainers.sft import SFTConfig

# A compared method: a registered method, with config overrides for variants and ablations.
METHODS: dict[str, tuple[str, dict]] = {
    "hir": ("hir", {}),
    "farl": ("farl", {}),
    "sft": ("sft", {}),
    "ppo": ("ppo", {}),
    "ppo-ptx": ("ppo", {"ptx_coef": 27.8}),
    "hir-no-contrastive": ("hir", {"contrastive_weight": 0.0}),
    "hir-no-entropy": ("hir", {"entropy_weight": 0.0}),
    "hir-no-sub-output": ("hir", {"sub_output_prob": 0.0}),
    "hir-no-label-smoothing": ("hir", {"label_smoothing": 0.0}),
    # For tuning the baselines' smoothing on the same budget as HIR's.
    "farl-no-label-smoothing": ("farl", {"label_smoothing": 0.0}),
    "sft-no-label-smoothing": ("sft", {"label_smoothing": 0.0}),
}
DEFAULT_METHODS = ("start", "hir", "farl", "ppo", "sft")
# Whose fields `hir compare` takes as flags (HIR's defaults first, where they differ).
CONFIG_CLASSES = (HIRConfig, FARLConfig, SFTConfig, PPOConfig)


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
    unknown = [m for m in methods if m != "start" and m not in METHODS]
    if unknown or not methods:
        raise HIRError(
            f"unknown method(s) {', '.join(unknown) or '(none)'}: choose from start, {', '.join(METHODS)}"
        )
    return methods


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(seed) for seed in text.split(",") if seed.strip()]
    except ValueError as exc:
        raise HIRError(f"--seeds must be comma-separated integers, got {text!r}") from exc
    if not seeds:
        raise HIRError("--seeds names no seed")
    return seeds


def method_config(method: str, settings: dict, seed: int, output_dir: Path):
    """The config of one compared run: the shared settings this method has a field for, its
    variant's overrides, its own defaults for the rest."""
    name, overrides = METHODS[method]
    trainer_class, config_class = get_method(name)
    known = {f.name for f in fields(config_class)}
    values = {k: v for k, v in settings.items() if k in known}
    values.update(seed=seed, output_dir=str(output_dir / method / f"seed-{seed}"),
                  overwrite_output_dir=not settings.get("resume", False), **overrides)  # fmt: skip
    return trainer_class, config_class(**values)


def run_comparison(
    settings: dict,
    methods: list[str],
    seeds: list[int],
    start: StartFn,
    output_dir: str | Path,
    model_options: ModelArguments | None = None,
) -> dict:
    """`settings`: config fields chosen for every method (each uses those it has).
    `model_options`: how each run loads its start (prompt format, LoRA, trained layers).

    With `settings["resume"]`, runs that finished are read back, not run again, and an
    interrupted run continues from its last checkpoint. The table is rewritten after every
    run, so a long comparison shows its results as they come."""
    output_dir = Path(output_dir)
    model_options = model_options or ModelArguments()
    resume = bool(settings.get("resume", False))

    def load_start(model: str):
        return dataclasses.replace(model_options, model=str(model)).load_policy()

    run_settings = RunConfig(**{k: v for k, v in settings.items()
                                if k in {f.name for f in fields(RunConfig)}})  # fmt: skip
    for method in methods:  # every config is checked before anything runs
        if method != "start":
            method_config(method, settings, seeds[0], output_dir)
    runs: list[dict] = []
    table_is_current = False  # rewritten after each new run; once at the end if the last was kept
    for seed in seeds:
        begin = start(seed)
        task, start_model = begin.task, begin.model
        if "ppo-ptx" in methods and not begin.pretraining_pairs:
            raise HIRError(
                "ppo-ptx needs the starting policy's supervised data for its ptx term: "
                "use --warm-start or --demo, or leave ppo-ptx out"
            )
        for method in methods:
            record_path = output_dir / method / f"seed-{seed}" / "compare_run.json"
            if resume and record_path.is_file():
                print(f"hir compare: {method}, seed {seed}: finished before, kept")
                runs.append(json.loads(record_path.read_text(encoding="utf-8")))
                table_is_current = False
                continue
            print(f"hir compare: {method}, seed {seed}")
            with PeakMemory() as memory:
                began = time.perf_counter()
                if method == "start":
                    # The same evaluation (split, limit, batch size, instruction, success rule)
                    # as every method's iteration 0.
                    instruction = run_settings.correct_instruction or task.correct_instruction
                    result = evaluate_with_config(
                        load_start(start_model), task, run_settings, instruction
                    )
                    history = [{"iteration": 0, "accuracy": result.accuracy,
                                "mean_score": result.mean_score, "wall_seconds": 0.0}]  # fmt: skip
                else:
                    trainer_class, config = method_config(method, settings, seed, output_dir)
                    extra = {"ptx_pairs": begin.pretraining_pairs} if method == "ppo-ptx" else {}
                    trainer_class(load_start(start_model), task, config, **extra).train()
                    records = evaluated_records(
                        read_jsonl(Path(config.output_dir) / "metrics.jsonl")
                    )
                    history = [{key: record[key] for key in ("iteration", "accuracy", "mean_score", "wall_seconds")}
                               for record in records]  # fmt: skip
                seconds = time.perf_counter() - began
            run = {"method": method, "seed": seed, "final_accuracy": history[-1]["accuracy"],
                   "final_mean_score": history[-1]["mean_score"], "wall_seconds": seconds,
                   "peak_rss_mib": memory.peak_mib, "history": history}  # fmt: skip
            atomic_write_json(record_path, run)  # written last: the run is finished
            runs.append(run)
            write_comparison(output_dir, summarize(runs, methods), runs, settings, seeds)
            table_is_current = True
    table = summarize(runs, methods)
    if not table_is_current:
        write_comparison(output_dir, table, runs, settings, seeds)
    return {"table": table, "runs": runs}


def summarize(runs: list[dict], methods: list[str]) -> list[dict]:
    rows = []
    for method in methods:
        mine = [r for r in runs if r["method"] == method]
        if not mine:
            continue
        accuracies = [r["final_accuracy"] for r in mine]
        scores = [r.get("final_mean_score", r["final_accuracy"]) for r in mine]
        rows.append({
            "method": method,
            "seeds": len(mine),
            "accuracy_mean": statistics.mean(accuracies),
            "accuracy_std": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
            "mean_score_mean": statistics.mean(scores),
            "mean_score_std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
            "wall_seconds_mean": statistics.mean(run_wall_seconds(r) for r in mine),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in mine),
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
        "wall time (s, mean) | peak RSS (MiB) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['accuracy_mean']:.3f} ± {r['accuracy_std']:.3f} | "
            f"{r['mean_score_mean']:.3f} ± {r['mean_score_std']:.3f} | {r['seeds']} | "
            f"{r['wall_seconds_mean']:.0f} | {r['peak_rss_mib']:.0f} |"
        )
    return "\n".join(lines)


def write_comparison(
    output_dir: Path, rows: list[dict], runs: list[dict], settings: dict, seeds: list[int]
) -> None:
    markdown = markdown_table(rows)
    atomic_write_text(output_dir / "comparison.md", markdown + "\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(output_dir / "comparison.csv", buffer.getvalue())
    atomic_write_json(output_dir / "comparison.json", {"table": rows, "runs": runs, "seeds": seeds,
                                                        "settings": settings, "versions": library_versions()})  # fmt: skip
    plot_comparison(runs, output_dir)
    atomic_write_text(output_dir / "diagnostics.md", diagnostics_markdown(diagnostics_rows(training_histories(output_dir, runs))) + "\n")  # fmt: skip
    print(
        "\n"
        + markdown
        + f"\n\nwrote {output_dir / 'comparison.md'}, comparison.csv, diagnostics.md, accuracy_vs_iteration.png, accuracy_vs_wall_time.png"
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
