"""Tables and plots of results."""

from __future__ import annotations

import statistics
import sys
from collections.abc import Sequence
from pathlib import Path


def pyplot():
    """matplotlib's pyplot for files (no display), imported at the first plot; None, with a
    note, where matplotlib is not installed (a bare GPU image): runs go on without plots."""
    try:
        import matplotlib
    except ImportError:
        print("hir: matplotlib is not installed: no plots", file=sys.stderr)
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def mean_and_std(values: Sequence[float]) -> tuple[float, float] | None:
    """(mean, sample std; 0 for one value) of results over seeds, or None for no values."""
    if not values:
        return None
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def evaluated_records(history: list[dict]) -> list[dict]:
    """The history records that hold an evaluation (all of them when eval_every is 1)."""
    return [record for record in history if "accuracy" in record]


def plot_accuracy(history: list[dict], path: str | Path, title: str = "") -> Path | None:
    """Accuracy after each iteration (0 = the starting policy) as a PNG (None: no matplotlib)."""
    plt = pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    evaluated = evaluated_records(history)
    iterations = [r["iteration"] for r in evaluated]
    ax.plot(iterations, [r["accuracy"] for r in evaluated], marker="o", label="eval accuracy")
    if any("sample_accuracy" in r for r in history):
        sampled = [
            (r["iteration"], r["sample_accuracy"]) for r in history if "sample_accuracy" in r
        ]
        ax.plot(*zip(*sampled), marker=".", linestyle="--", label="accuracy of training samples")
    ax.set_xlabel("iteration")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def before_after_table(rows: list[tuple[str, float, float]]) -> str:
    """Markdown table of (name, before, after) accuracies."""
    lines = ["| run | before | after | gain |", "|---|---|---|---|"]
    for name, before, after in rows:
        lines.append(f"| {name} | {before:.3f} | {after:.3f} | {after - before:+.3f} |")
    return "\n".join(lines)


def plot_comparison(runs: list[dict], by_iteration: Path, by_time: Path) -> None:
    """Mean accuracy over seeds per method, against iteration and against wall time."""
    plt = pyplot()
    if plt is None:
        return
    methods = list(dict.fromkeys(r["method"] for r in runs))
    for x_key, path, label in [("iteration", by_iteration, "iteration"),
                               ("wall_seconds", by_time, "wall time (s)")]:  # fmt: skip
        fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
        for method in methods:
            histories = [r["history"] for r in runs if r["method"] == method]
            length = min(len(h) for h in histories)
            xs = [sum(h[i][x_key] for h in histories) / len(histories) for i in range(length)]
            ys = [sum(h[i]["accuracy"] for h in histories) / len(histories) for i in range(length)]
            if length == 1:
                ax.axhline(ys[0], linestyle=":", color="gray", label=method)
            else:
                ax.plot(xs, ys, marker="o", label=method)
        ax.set_xlabel(label)
        ax.set_ylabel(f"accuracy (mean of {len(set(r['seed'] for r in runs))} seeds)")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
