"""Tables and plots of results."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402


def plot_accuracy(history: list[dict], path: str | Path, title: str = "") -> Path:
    """Accuracy after each iteration (0 = the starting policy) as a PNG."""
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    iterations = [r["iteration"] for r in history]
    ax.plot(iterations, [r["accuracy"] for r in history], marker="o", label="eval accuracy")
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
