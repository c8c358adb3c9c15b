"""Where a comparison stands, read from its folder alone (`hir compare --status`): each run is
finished (with its accuracy), running (in which process, how far), interrupted (how far: the
next `--resume` continues it) or not started. It reads files only: it takes no lock, loads no
model and changes nothing, so it can run beside the processes that do the work.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from hir.compare.table import run_wall_seconds
from hir.runs.checkpoint import list_checkpoints
from hir.runs.fileio import read_jsonl
from hir.runs.folders import RunFolder, run_folder
from hir.runs.lock import live_holder

STATES = ("finished", "running", "interrupted", "not started")


def comparison_status(
    output_dir: str | Path, methods: Sequence[str], seeds: Sequence[int]
) -> list[dict]:
    """One row per (seed, method), in the order the comparison runs them."""
    return [{"method": method, "seed": seed, **run_state(run_folder(output_dir, method, seed))}
            for seed in seeds for method in methods]  # fmt: skip


def run_state(folder: Path) -> dict:
    """`state` (one of STATES), and what is known: a finished run's final accuracy (under the
    comparison's evaluation split) and wall hours; the last iteration logged and of how many,
    the hours its other iterations will take at the pace so far, the last checkpoint and the
    process holding it."""
    files = RunFolder(folder)
    if files.compare_record.is_file():
        record = json.loads(files.compare_record.read_text())
        return {"state": "finished", "accuracy": record["final_accuracy"],
                "hours": run_wall_seconds(record) / 3600}  # fmt: skip
    state = {"state": "not started"}
    metrics = files.metrics
    if metrics.is_file():
        logged = list(read_jsonl(metrics))
        if logged:
            state.update(state="interrupted", iteration=logged[-1]["iteration"])
    if files.config.is_file():
        record = json.loads(files.config.read_text())
        state["iterations"] = record.get("config", {}).get("iterations")
        if "iteration" in state and state["iterations"]:
            left = hours_left(logged, state["iterations"])
            if left is not None:
                state["hours_left"] = left
    checkpoints = list_checkpoints(files.checkpoints)
    if checkpoints:
        state.update(state="interrupted", checkpoint=checkpoints[-1].name)
    holder = live_holder(folder) if folder.is_dir() else None
    if holder is not None:
        state.update(state="running", process=f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started')}")  # fmt: skip
    return state


def hours_left(logged: Sequence[dict], iterations: int) -> float | None:
    """The hours the iterations after the last logged one will take, at the mean pace of those
    logged so far (the log's iteration 0 is the evaluation before training; its wall_seconds
    count from the run's start, across resumes). None before the first iteration is logged."""
    last, first = logged[-1], logged[0]
    done = last["iteration"] - first["iteration"]
    if done < 1 or "wall_seconds" not in last or "wall_seconds" not in first:
        return None
    pace = (last["wall_seconds"] - first["wall_seconds"]) / done
    return max(iterations - last["iteration"], 0) * pace / 3600


def status_markdown(rows: Sequence[dict], output_dir: str | Path) -> str:
    """A table of `rows` and a line that counts them by state; names a live process that holds
    the whole comparison (one started without --resume)."""
    lines = ["| method | seed | state | accuracy | hours | iteration | hours left (est.) | last checkpoint | held by |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for row in rows:
        accuracy = f"{row['accuracy']:.3f}" if "accuracy" in row else ""
        hours = f"{row['hours']:.2f}" if "hours" in row else ""
        iteration = ""
        if "iteration" in row:
            iteration = f"{row['iteration']} of {row['iterations']}" if row.get("iterations") else str(row["iteration"])  # fmt: skip
        left = f"{row['hours_left']:.2f}" if "hours_left" in row else ""
        lines.append(f"| {row['method']} | {row['seed']} | {row['state']} | {accuracy} | {hours} | "
                     f"{iteration} | {left} | {row.get('checkpoint', '')} | {row.get('process', '')} |")  # fmt: skip
    counts = Counter(row["state"] for row in rows)
    lines += [
        "",
        f"{len(rows)} runs: " + ", ".join(f"{counts[s]} {s}" for s in STATES if counts[s]),
    ]
    holder = live_holder(output_dir) if Path(output_dir).is_dir() else None
    if holder is not None:
        lines.append(f"The whole comparison is held by pid {holder.get('pid')} on {holder.get('host')} "
                     f"(started without --resume, since {holder.get('started')}).")  # fmt: skip
    return "\n".join(lines)
