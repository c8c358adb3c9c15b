"""What `hir compare` writes: the table (Markdown and CSV: final accuracy and mean score, mean
± std over seeds, wall time, peak memory), every pair of methods' difference paired by seed with
its confidence interval and verdict (`hir.compare.statistics`), comparison.json (what was
compared, every run, versions), the two plots, diagnostics.md and, where runs were screened,
transfer.md."""

from __future__ import annotations

import csv
import io
import statistics
from pathlib import Path

from hir.compare.diagnostics import diagnostics_markdown, diagnostics_rows
from hir.compare.statistics import PAIRED_HEADING, paired_markdown, paired_rows
from hir.compare.transfer import transfer_markdown, transfer_rows
from hir.runs.fileio import atomic_write_json, atomic_write_text, read_jsonl
from hir.runs.folders import ComparisonFolder
from hir.runs.report import mean_and_std, plot_comparison
from hir.runs.versions import library_versions


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
    """A trained run's own clock, which a resumed run continues (records written before it
    was their `wall_seconds` hold only what the last process ran); for the start row, the time
    of its evaluation."""
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
    files = ComparisonFolder(output_dir)
    paired = paired_rows(runs, [r["method"] for r in rows])
    markdown = markdown_table(rows)
    if paired:
        atomic_write_text(files.paired, PAIRED_HEADING + paired_markdown(paired) + "\n")
    transfer = transfer_rows(output_dir, runs, [r["method"] for r in rows])
    if transfer:
        atomic_write_text(files.transfer, transfer_markdown(transfer))
    atomic_write_text(files.table, markdown + "\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(files.table_csv, buffer.getvalue())
    atomic_write_json(files.record, {**record, "table": rows, "paired": paired, "runs": runs,
                                                        "transfer": transfer,
                                                        "versions": library_versions()})  # fmt: skip
    plot_comparison(runs, files.plot_by_iteration, files.plot_by_time)
    atomic_write_text(files.diagnostics, diagnostics_markdown(diagnostics_rows(training_histories(output_dir, runs))) + "\n")  # fmt: skip
    print(
        "\n"
        + markdown
        + ("\n\n" + PAIRED_HEADING + paired_markdown(paired) if paired else "")
        + f"\n\nwrote {files.table}, {files.table_csv.name}, {files.diagnostics.name}, "
        + f"{files.plot_by_iteration.name}, {files.plot_by_time.name}"
        + (f", {files.paired.name}" if paired else "")
        + (f", {files.transfer.name}" if transfer else "")
    )


def training_histories(output_dir: Path, runs: list[dict]) -> dict[str, list[list[dict]]]:
    """Each trained method's full per-iteration logs (`metrics.jsonl`), one list per seed."""
    histories: dict[str, list[list[dict]]] = {}
    for run in runs:
        path = ComparisonFolder(output_dir).run(run["method"], run["seed"]).metrics
        if run["method"] != "start" and path.is_file():
            histories.setdefault(run["method"], []).append(list(read_jsonl(path)))
    return histories
