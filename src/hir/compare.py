"""`hir compare`: several methods on the same task, starting policy, sampling budget and seeds,
in one table (Markdown and CSV: final accuracy mean ± std over seeds, wall time, peak memory)
and two plots (accuracy against iteration and against wall time).

Methods: "start" (the untouched starting policy), "hir", "farl", "sft", "ppo", "ppo-ptx" (PPO
plus gamma = 27.8 times the log-likelihood of the warm-up data, as InstructGPT), and HIR
ablations "hir-no-contrastive", "hir-no-entropy", "hir-no-sub-output", "hir-no-label-smoothing".
"""

from __future__ import annotations

import csv
import io
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from hir.errors import HIRError
from hir.evaluate import evaluate
from hir.fileio import atomic_write_json, atomic_write_text, read_jsonl
from hir.models import load_policy
from hir.report import plot_comparison
from hir.runinfo import library_versions
from hir.tasks.base import Task
from hir.trainers.farl import FARLTrainer
from hir.trainers.hir_config import HIRConfig
from hir.trainers.hir_trainer import HIRTrainer
from hir.trainers.ppo import PPOConfig, PPOTrainer
from hir.trainers.sft import SFTTrainer

METHODS: dict[str, tuple[type, dict]] = {
    "hir": (HIRTrainer, {}),
    "farl": (FARLTrainer, {}),
    "sft": (SFTTrainer, {}),
    "ppo": (PPOTrainer, {}),
    "ppo-ptx": (PPOTrainer, {"ptx_coef": 27.8}),
    "hir-no-contrastive": (HIRTrainer, {"contrastive_weight": 0.0}),
    "hir-no-entropy": (HIRTrainer, {"entropy_weight": 0.0}),
    "hir-no-sub-output": (HIRTrainer, {"sub_output_prob": 0.0}),
    "hir-no-label-smoothing": (HIRTrainer, {"label_smoothing": 0.0}),
}
DEFAULT_METHODS = ("start", "hir", "farl", "ppo", "sft")


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


def run_comparison(
    base: HIRConfig, methods: list[str], seeds: list[int], start: StartFn, output_dir: str | Path
) -> dict:
    output_dir = Path(output_dir)
    runs: list[dict] = []
    for seed in seeds:
        begin = start(seed)
        task, start_model = begin.task, begin.model
        if "ppo-ptx" in methods and not begin.pretraining_pairs:
            raise HIRError(
                "ppo-ptx needs the starting policy's supervised data for its ptx term: "
                "use --warm-start or --demo, or leave ppo-ptx out"
            )
        for method in methods:
            print(f"hir compare: {method}, seed {seed}")
            with PeakMemory() as memory:
                began = time.perf_counter()
                if method == "start":
                    accuracy = evaluate(
                        load_policy(start_model),
                        task,
                        split=base.eval_split,
                        max_new_tokens=base.max_new_tokens,
                    ).accuracy
                    history = [{"iteration": 0, "accuracy": accuracy, "wall_seconds": 0.0}]
                else:
                    trainer_class, overrides = METHODS[method]
                    settings = {**base.to_dict(), "model": str(start_model), "seed": seed,
                                "output_dir": str(output_dir / method / f"seed-{seed}"),
                                "overwrite_output_dir": not base.resume, **overrides}  # fmt: skip
                    config = (PPOConfig if trainer_class is PPOTrainer else HIRConfig)(**settings)
                    extra = {"ptx_pairs": begin.pretraining_pairs} if method == "ppo-ptx" else {}
                    trainer_class(str(start_model), task, config, **extra).train()
                    history = [
                        {key: record[key] for key in ("iteration", "accuracy", "wall_seconds")}
                        for record in read_jsonl(Path(config.output_dir) / "metrics.jsonl")
                    ]
                seconds = time.perf_counter() - began
            runs.append({"method": method, "seed": seed, "final_accuracy": history[-1]["accuracy"], "wall_seconds": seconds,
                         "peak_rss_mib": memory.peak_mib, "history": history})  # fmt: skip
    table = summarize(runs, methods)
    write_comparison(output_dir, table, runs, base, seeds)
    return {"table": table, "runs": runs}


def summarize(runs: list[dict], methods: list[str]) -> list[dict]:
    rows = []
    for method in methods:
        mine = [r for r in runs if r["method"] == method]
        accuracies = [r["final_accuracy"] for r in mine]
        rows.append({
            "method": method,
            "seeds": len(mine),
            "accuracy_mean": statistics.mean(accuracies),
            "accuracy_std": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
            "wall_seconds_mean": statistics.mean(r["wall_seconds"] for r in mine),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in mine),
        })  # fmt: skip
    return rows


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| method | final accuracy (mean ± std) | seeds | wall time (s, mean) | peak RSS (MiB) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['accuracy_mean']:.3f} ± {r['accuracy_std']:.3f} | {r['seeds']} | "
            f"{r['wall_seconds_mean']:.0f} | {r['peak_rss_mib']:.0f} |"
        )
    return "\n".join(lines)


def write_comparison(
    output_dir: Path, rows: list[dict], runs: list[dict], base: HIRConfig, seeds: list[int]
) -> None:
    markdown = markdown_table(rows)
    atomic_write_text(output_dir / "comparison.md", markdown + "\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(output_dir / "comparison.csv", buffer.getvalue())
    atomic_write_json(output_dir / "comparison.json", {"table": rows, "runs": runs, "seeds": seeds,
                                                        "config": base.to_dict(), "versions": library_versions()})  # fmt: skip
    plot_comparison(runs, output_dir)
    print(
        "\n"
        + markdown
        + f"\n\nwrote {output_dir / 'comparison.md'}, comparison.csv, accuracy_vs_iteration.png, accuracy_vs_wall_time.png"
    )


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
