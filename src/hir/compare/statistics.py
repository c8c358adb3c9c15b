"""Statistics that can call a winner: for each pair of compared methods, the difference of their
final accuracies paired by seed (the same seed is the same start, split and queries), its mean,
its 95% confidence interval (Student's t over the seeds), and one word: "better" when the whole
interval lies above zero, "worse" when below, "tie at this budget" otherwise.

With 3 seeds the interval is mean ± 4.30 sd / sqrt(3): a gap must be large against its
spread over seeds before the word is anything but a tie."""

from __future__ import annotations

import json
import math
import statistics
from itertools import combinations
from pathlib import Path

from scipy import stats

CONFIDENCE = 0.95
TIE = "tie at this budget"
PAIRED_HEADING = "Final accuracy, paired by seed:\n\n"


def paired_difference(first: list[float], second: list[float], confidence: float = CONFIDENCE) -> dict:  # fmt: skip
    """`first - second`, paired element by element (by seed): mean, sd, the confidence interval
    and the word. Fewer than two pairs give no interval."""
    differences = [a - b for a, b in zip(first, second, strict=True)]
    n = len(differences)
    mean = statistics.fmean(differences)
    if n < 2:
        return {"mean": mean, "sd": None, "low": None, "high": None, "seeds": n,
                "verdict": "one seed: no interval"}  # fmt: skip
    sd = statistics.stdev(differences)
    half = stats.t.ppf((1 + confidence) / 2, n - 1) * sd / math.sqrt(n)
    low, high = mean - half, mean + half
    verdict = "better" if low > 0 else "worse" if high < 0 else TIE
    return {"mean": mean, "sd": sd, "low": low, "high": high, "seeds": n, "verdict": verdict}


def paired_rows(runs: list[dict], methods: list[str], key: str = "final_accuracy") -> list[dict]:
    """Every pair of `methods` (in table order, the first named first) over the seeds both ran:
    the first's `key` (final accuracy) minus the second's."""
    accuracy = {(r["method"], r["seed"]): r[key] for r in runs}
    rows = []
    for first, second in combinations(methods, 2):
        seeds = sorted(
            {s for m, s in accuracy if m == first} & {s for m, s in accuracy if m == second}
        )
        if not seeds:
            continue
        row = paired_difference([accuracy[first, s] for s in seeds], [accuracy[second, s] for s in seeds])  # fmt: skip
        rows.append({"first": first, "second": second, **row})
    return rows


def paired_markdown(rows: list[dict]) -> str:
    lines = [
        f"| first | second | first - second, mean (paired by seed) | {CONFIDENCE:.0%} CI | seeds | verdict |",
        "|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in rows:
        interval = "-" if r["low"] is None else f"[{r['low']:+.3f}, {r['high']:+.3f}]"
        lines.append(f"| {r['first']} | {r['second']} | {r['mean']:+.3f} | {interval} | {r['seeds']} | {r['verdict']} |")  # fmt: skip
    return "\n".join(lines)


def write_paired(output_dir: str | Path) -> Path:
    """`paired.md` for a comparison folder, from the runs its comparison.json records (for
    comparisons written before `hir compare` wrote it itself)."""
    from hir.runs.fileio import atomic_write_text
    from hir.runs.folders import ComparisonFolder

    files = ComparisonFolder(output_dir)
    record = json.loads(files.record.read_text(encoding="utf-8"))
    rows = paired_rows(record["runs"], [r["method"] for r in record["table"]])
    atomic_write_text(files.paired, PAIRED_HEADING + paired_markdown(rows) + "\n")
    return files.paired


def write_paired_evaluation(output_dir: str | Path, evaluation: str, metric: str) -> Path:
    """`paired-EVALUATION-METRIC.md` for a comparison folder: the runs paired by seed on one
    metric of an evaluation made after the comparison, METHOD/seed-N/EVALUATION/summary.json
    (e.g. `hir eval --run RUN --task ifeval --output_dir RUN/ifeval`, and the start's folder
    evaluated with `--model`), so a test set the runs were not tuned on gets its verdicts."""
    from hir.errors import HIRError
    from hir.runs.fileio import atomic_write_text
    from hir.runs.folders import EVALUATION_SUMMARY, ComparisonFolder

    files = ComparisonFolder(output_dir)
    record = json.loads(files.record.read_text(encoding="utf-8"))
    runs = []
    for method in (r["method"] for r in record["table"]):
        for summary in sorted(Path(output_dir).glob(f"{method}/seed-*/{evaluation}/{EVALUATION_SUMMARY}")):  # fmt: skip
            values = json.loads(summary.read_text(encoding="utf-8"))
            if metric not in values:
                raise HIRError(f"{summary} has no {metric!r}: name one of {', '.join(sorted(values))}")  # fmt: skip
            seed = int(summary.parent.parent.name.removeprefix("seed-"))
            runs.append({"method": method, "seed": seed, metric: values[metric]})
    if not runs:
        raise HIRError(f"no run of {output_dir} has {evaluation}/{EVALUATION_SUMMARY}: evaluate them first "
                       f"(hir eval --run RUN --output_dir RUN/{evaluation})")  # fmt: skip
    methods = list(dict.fromkeys(r["method"] for r in runs))
    path = Path(output_dir) / f"paired-{evaluation}-{metric}.md"
    heading = f"{evaluation} {metric}, paired by seed:\n\n"
    atomic_write_text(
        path, heading + paired_markdown(paired_rows(runs, methods, key=metric)) + "\n"
    )
    return path


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m hir.compare.statistics",
                                     description="paired.md for comparison folders")  # fmt: skip
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--evaluation", help="pair on RUN/EVALUATION/summary.json instead of final accuracy")  # fmt: skip
    parser.add_argument("--metric", default="accuracy", help="the summary's key to pair on")
    args = parser.parse_args(argv)
    for folder in args.folders:
        if args.evaluation:
            print(f"wrote {write_paired_evaluation(folder, args.evaluation, args.metric)}")
        else:
            print(f"wrote {write_paired(folder)}")


if __name__ == "__main__":
    main()
