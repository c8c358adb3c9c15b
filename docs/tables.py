"""The tables of README.md and docs/*.md, regenerated from the files runs and benchmarks wrote
(results/, benchmarks/results/), so that a number in the prose's tables cannot drift from its run.

    python docs/tables.py          # rewrite every marked table in place
    python docs/tables.py --check  # exit 1, naming each table that differs (tests/test_doc_tables.py)

A table is marked by the source it is made from:

    <!-- table: include results/smollm2-study-count/paired.md rows=hir,farl columns=first,second,verdict -->
    | ... |
    <!-- /table -->

Kinds:
- `include FILE [rows=A,B] [columns=X,Y] [match=COLUMN] [table=N]`: the (N-th) markdown table in FILE (written by
  `hir compare`, `hir screen` or `python -m hir.compare.statistics`), its rows whose first column
  (or `match` column) is one of `rows`, its columns named in `columns`, both in the order given;
  `rows` entries "A/B" match a paired table's row whose first two columns are A and B;
  `add=FILE2#COLUMN` first appends COLUMN of FILE2's table, its rows matched by first cell.
- `accuracy DIR... methods=M,N labels=L1,L2 tasks=T1,T2`: one row per comparison folder, one
  column per method, its final test accuracy "mean ± std" over seeds (the start: its mean; a
  method with fewer seeds done than the comparison's: its mean and "k of n seeds"), from each
  folder's comparison.json.
- `comparison DIR... methods=M,N labels=L1,L2 [columns=accuracy,per_seed,wall,rss]`: one row
  per method from the first folder's comparison.json (`M@DIR2` reads M from another folder):
  final test accuracy "mean ± std", each seed's, the mean wall time and the peak RSS per run.
- `gain DIR before=M after=N labels=L1,L2`: per seed, the final test accuracy of two methods of a
  comparison and the paired difference, and their mean ± std.
- `premise FILE... labels=L1,L2`: `hir eval --premise true`'s premise.json per model: accuracy
  under the two instructions, the share of same answers, the commonest answers under each.
- `warmup FILE... labels=L1,L2`: `hir warm-up`'s JSON per attempt: for each task, accuracy under
  the correct / the wrong instruction / the share of same answers, before -> after.
- `runs DIR methods=M,N labels=L1,L2`: a comparison's methods from their runs' own files:
  accuracy per seed, the commonest answer at the end, right and distinct samples, updates.
- `curves DIR methods=M,N labels=L1,L2`: each seed's accuracy at every evaluated iteration.
- `speed FILE`: the real-iteration benchmark's JSON as a table of seconds, peak RSS and ratios.
- `trl_grpo FILE`: `benchmarks/trl_grpo.py`'s JSON, TRL's trainer and hir side by side.
- `greedy_segments FILE`: `benchmarks/greedy_segments.py`'s JSON, one row per case.
- `ifeval SOURCE... labels=A,B`: IFEval's four numbers per source (a JSON file, or FILE#KEY).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = ("README.md", "docs/findings.md", "docs/performance.md")
MARKED = re.compile(r"(<!-- table: (?P<spec>.+?) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)


def parse_table(text: str, number: int = 1) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the `number`-th markdown table in `text`."""
    tables = re.findall(r"(?:^\|.*\n?)+", text, re.M)
    if len(tables) < number:
        raise ValueError(f"no markdown table number {number}")
    lines = tables[number - 1].splitlines()
    if len(lines) < 2:
        raise ValueError("no markdown table")
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    return cells[0], cells[2:]


def render(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


def include(path: str, rows: str | None = None, columns: str | None = None, match: str | None = None, add: str | None = None, table: str = "1") -> str:  # fmt: skip
    header, body = parse_table((ROOT / path).read_text(encoding="utf-8"), int(table))
    if add:
        header, body = _joined(header, body, *add.split("#"))
    if rows:
        key = header.index(match) if match else 0
        wanted = rows.split(",")

        def row_key(row: list[str]) -> str:
            return f"{row[0]}/{row[1]}" if "/" in wanted[0] and not match else row[key]

        by_key: dict[str, list[list[str]]] = {}
        for row in body:
            by_key.setdefault(row_key(row), []).append(row)
        missing = [w for w in wanted if w not in by_key]
        if missing:
            raise ValueError(f"{path} has no row {', '.join(missing)}")
        ambiguous = [w for w in wanted if len(by_key[w]) > 1]
        if ambiguous:
            raise ValueError(f"{path} has several rows {', '.join(ambiguous)}: name them A/B")
        body = [by_key[w][0] for w in wanted]
    if columns:
        names = columns.split(",")
        missing = [n for n in names if n not in header]
        if missing:
            raise ValueError(f"{path} has no column {', '.join(missing)}")
        indices = [header.index(n) for n in names]
        header, body = names, [[row[i] for i in indices] for row in body]
    return render(header, body)


def _comparison(folder: str | Path) -> tuple[dict, dict[str, dict]]:
    """A comparison folder's comparison.json, and its table's rows by method."""
    record = json.loads((ROOT / folder / "comparison.json").read_text())
    return record, {row["method"]: row for row in record["table"]}


def _joined(header: list[str], body: list[list[str]], path: str, column: str) -> tuple[list[str], list[list[str]]]:  # fmt: skip
    """The table with `column` of the table in `path` appended, rows matched by first cell."""
    other_header, other_body = parse_table((ROOT / path).read_text(encoding="utf-8"))
    if column not in other_header:
        raise ValueError(f"{path} has no column {column}")
    index = other_header.index(column)
    values = {row[0]: row[index] for row in other_body}
    return [*header, column], [[*row, values.get(row[0], "-")] for row in body]


def accuracy(*folders: str, methods: str, labels: str, tasks: str) -> str:
    methods_, labels_, tasks_ = methods.split(","), labels.split(","), tasks.split(",")
    rows = []
    for folder, task in zip(folders, tasks_, strict=True):
        comparison, table = _comparison(folder)
        seeds = comparison["seeds"]
        cells = []
        for method in methods_:
            row = table.get(method)
            if row is None:
                cells.append("-")
            elif method == "start":
                cells.append(f"{row['accuracy_mean']:.3f}")
            elif row["seeds"] < len(seeds):  # a method whose seeds are not all done
                cells.append(f"{row['accuracy_mean']:.3f} ({row['seeds']} of {len(seeds)} seeds)")
            else:
                cells.append(f"{row['accuracy_mean']:.3f} ± {row['accuracy_std']:.3f}")
        rows.append([task, *cells])
    return render(["task", *labels_], rows)


COMPARISON_COLUMNS = {
    "accuracy": "final accuracy (mean ± std, {seeds} seeds)",
    "per_seed": "per seed",
    "wall": "wall time per run (s)",
    "rss": "peak RSS (MiB)",
}


def comparison(folder: str, methods: str, labels: str, columns: str = "accuracy,per_seed,wall") -> str:  # fmt: skip
    """One row per method of a comparison, from its comparison.json; "M@DIR" takes method M
    from the comparison in DIR (a rerun of one method in its own folder)."""
    names = columns.split(",")
    unknown = [n for n in names if n not in COMPARISON_COLUMNS]
    if unknown:
        raise ValueError(f"no column {', '.join(unknown)}; known: {', '.join(COMPARISON_COLUMNS)}")
    rows, seed_counts = [], set()
    for entry, label in zip(methods.split(","), labels.split(","), strict=True):
        method, _, source = entry.partition("@")
        result, table = _comparison(source or folder)
        row = table.get(method)
        if row is None:
            raise ValueError(f"{source or folder} has no method {method}")
        per_seed = sorted(
            (r for r in result["runs"] if r["method"] == method), key=lambda r: r["seed"]
        )
        seed_counts.add(row["seeds"])
        cells = {
            "accuracy": f"{row['accuracy_mean']:.3f} ± {row['accuracy_std']:.3f}",
            "per_seed": " / ".join(f"{r['final_accuracy']:.3f}" for r in per_seed),
            "wall": f"{row['wall_seconds_mean']:.0f}",
            "rss": f"{row['peak_rss_mib']:.0f}",
        }
        rows.append([label, *(cells[n] for n in names)])
    seeds = "/".join(map(str, sorted(seed_counts)))
    return render(["method", *(COMPARISON_COLUMNS[n].format(seeds=seeds) for n in names)], rows)


def gain(folder: str, before: str, after: str, labels: str) -> str:
    """Per seed: `before`'s and `after`'s final test accuracy and the difference; then mean ± std
    (the sample std, as comparison.json's)."""
    runs = _comparison(folder)[0]["runs"]
    by_seed: dict[int, dict[str, float]] = {}
    for run in runs:
        if run["method"] in (before, after):
            by_seed.setdefault(run["seed"], {})[run["method"]] = run["final_accuracy"]
    seeds = sorted(s for s, found in by_seed.items() if len(found) == 2)
    if not seeds:
        raise ValueError(f"{folder} has no seed with both {before} and {after}")
    columns = [[by_seed[s][before] for s in seeds], [by_seed[s][after] for s in seeds]]
    columns.append([b - a for a, b in zip(*columns)])
    rows = [[str(s), f"{columns[0][i]:.3f}", f"{columns[1][i]:.3f}", f"{columns[2][i]:+.3f}"] for i, s in enumerate(seeds)]  # fmt: skip
    rows.append(["mean ± std", *(_mean_std(c, sign=k == 2) for k, c in enumerate(columns))])
    return render(["seed", *labels.split(","), "gain"], rows)


def _mean_std(values: list[float], sign: bool = False) -> str:
    mean, std = statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:+.3f} ± {std:.3f}" if sign else f"{mean:.3f} ± {std:.3f}"


def premise(*paths: str, labels: str) -> str:
    rows = []
    for path, label in zip(paths, labels.split(","), strict=True):
        p = json.loads((ROOT / path).read_text())
        answers = [", ".join(f"{a} {n}" for a, n in p[f"top_answers_{which}_instruction"].items())
                   for which in ("correct", "wrong")]  # fmt: skip
        rows.append([label, f"{p['accuracy_correct_instruction']:.3f} / {p['accuracy_wrong_instruction']:.3f}",
                     f"{p['same_answer_share']:.2f}", *answers])  # fmt: skip
    header = ["model", "accuracy, correct / wrong instruction", "same answer",
              'answers under "correct"', 'answers under "wrong"']  # fmt: skip
    return render(header, rows)


def warmup(*paths: str, labels: str) -> str:
    attempts = [json.loads((ROOT / path).read_text()) for path in paths]
    tasks: list[str] = []
    for attempt in attempts:
        tasks += [t for t in attempt["tasks"] if t not in tasks]
    targets = [t for t in attempts[0]["targets"] if t not in tasks]

    def cell(attempt: dict, task: str) -> str:
        before = {p["task"]: p for p in attempt["premise_before"]}.get(task)
        after = {p["task"]: p for p in attempt["premise_after"]}.get(task)
        if before is None or after is None:
            return ""
        keys = ("accuracy_correct_instruction", "accuracy_wrong_instruction", "same_answer_share")
        return " / ".join(f"{before[k]:.2f}->{after[k]:.2f}" for k in keys)

    rows = [[task, "warm-up" if task in tasks else "target, validation", *(cell(a, task) for a in attempts)]
            for task in tasks + targets]  # fmt: skip
    return render(["task", "role", *labels.split(",")], rows)


def speed(path: str) -> str:
    """The measured (last) iteration of `benchmarks/real_iteration.py`'s two cases."""
    cases = json.loads((ROOT / path).read_text())["cases"]
    old, new = (cases[name]["iterations"][-1] for name in ("old", "new"))
    memory = {name: cases[name]["peak_rss_mib"] for name in ("old", "new")}
    phases = ("sampling", "training", "eval", "total")
    header = ["", "sampling s", "training s", "evaluation s", "whole iteration s", "peak RSS MiB"]
    rows = [
        ["before", *[f"{old[p]:.1f}" for p in phases], f"{memory['old']:,.0f}"],
        ["now", *[f"{new[p]:.1f}" for p in phases], f"{memory['new']:,.0f}"],
        ["ratio", *[f"{old[p] / new[p]:.2f}x" for p in phases], f"{memory['new'] / memory['old']:.2f}"],
    ]  # fmt: skip
    return render(header, rows)


def trl_grpo(path: str) -> str:
    """`benchmarks/trl_grpo.py`'s JSON: each side's seconds and peak RSS, and hir's ratios."""
    result = json.loads((ROOT / path).read_text())
    sides = [*result["trl"].items(), ("hir", result["hir"])]
    header = ["", "seconds", "peak RSS MiB", "optimizer steps", "mean completion tokens"]
    rows = [[name, f"{r['seconds']:.1f}", f"{r['peak_rss_mib']:,.0f}", str(r["optimizer_steps"]),
             f"{r['mean_completion_tokens']:.1f}"] for name, r in sides]  # fmt: skip
    rows.append(["TRL's faster / hir", f"{result['speedup']:.2f}x", f"{result['memory_ratio']:.2f}x", "", ""])  # fmt: skip
    fastest, hir = result["trl"][result["against"]], result["hir"]
    per_token = (fastest["seconds"] / fastest["mean_completion_tokens"]) / (hir["seconds"] / hir["mean_completion_tokens"])  # fmt: skip
    rows.append(["the same, per completion token", f"{per_token:.2f}x", "", "", ""])
    return render(header, rows)


def greedy_segments(path: str) -> str:
    result = json.loads((ROOT / path).read_text())
    prompts = result["settings"]["prompts"]
    header = ["", "batch", "seconds", "answer tokens / s", "baseline s / case s", "answers as the baseline's"]  # fmt: skip
    rows = [[c["case"], str(c["batch_size"]), f"{c['seconds']:.1f}", f"{c['answer_tokens'] / c['seconds']:.1f}",
             f"{c['speedup']:.2f}x", f"{c['same_answers']} of {prompts}"] for c in result["cases"]]  # fmt: skip
    return render(header, rows)


def runs(folder: str, methods: str, labels: str) -> str:
    """One row per method of a comparison folder, from its runs' own files: test accuracy
    (mean ± std, as comparison.json), each seed's, the commonest answer's share at the end per
    seed, the share of right samples and the distinct samples per query at the first and last
    iteration (means over seeds), and the optimizer steps per run."""
    root = ROOT / folder
    table = _comparison(folder)[1]
    rows = []
    for method, label in zip(methods.split(","), labels.split(","), strict=True):
        seeds = sorted(root.glob(f"{method}/seed-*/compare_run.json"), key=lambda f: f.parent.name)
        records = [json.loads(f.read_text()) for f in seeds]
        histories = [_metrics(f.parent) for f in seeds]
        sampled = [[r for r in h if "sample_accuracy" in r] for h in histories]

        ends = [r["history"][-1] for r in records]
        steps = [sum(r.get("train_steps", 0) for r in h) for h in histories]
        rows.append([
            label,
            f"{table[method]['accuracy_mean']:.3f} ± {table[method]['accuracy_std']:.3f}",
            ", ".join(f"{r['final_accuracy']:.3f}" for r in records),
            ", ".join(f"{e['commonest_answer_share']:.2f} (\"{e['commonest_answer']}\")"
                      if e.get("commonest_answer_share") is not None else "not logged" for e in ends),
            _trend(sampled, "sample_accuracy", 3),
            _trend(sampled, "unique_samples_per_query", 1),
            ", ".join(map(str, steps)) if any(steps) else "-",
        ])  # fmt: skip
    header = ["method", "test accuracy (mean ± std)", "per seed", "commonest answer at the end, per seed",
              "samples right (first → last iteration)", "distinct samples per query (first → last)",
              "updates per run, per seed"]  # fmt: skip
    return render(header, rows)


def curves(folder: str, methods: str, labels: str) -> str:
    """One row per method of a comparison folder: test accuracy (mean ± std, as comparison.json),
    each seed's accuracy at every evaluated iteration (its compare_run.json), and the mean wall
    time per run."""
    root = ROOT / folder
    table = _comparison(folder)[1]
    rows, iterations = [], None
    for method, label in zip(methods.split(","), labels.split(","), strict=True):
        seeds = sorted(root.glob(f"{method}/seed-*/compare_run.json"), key=lambda f: f.parent.name)
        histories = [json.loads(f.read_text())["history"] for f in seeds]
        if len(histories[0]) > 1:
            iterations = [h["iteration"] for h in histories[0]]
        rows.append([label, f"{table[method]['accuracy_mean']:.3f} ± {table[method]['accuracy_std']:.3f}",
                     *(" ".join(f"{h['accuracy']:.3f}" for h in history) for history in histories),
                     f"{table[method]['wall_seconds_mean']:.0f}"])  # fmt: skip
    evaluated = ", ".join(map(str, iterations or [0]))
    seeds = [f"seed {n} (iterations {evaluated})" if n == 0 else f"seed {n}" for n in range(len(rows[0]) - 3)]  # fmt: skip
    return render(
        ["method", "final test accuracy (mean ± std)", *seeds, "wall time (s, mean)"], rows
    )


def _trend(sampled: list[list[dict]], key: str, digits: int) -> str:
    """`key` at the first and the last sampling iteration, each the mean over the runs."""
    if not sampled or not all(sampled):
        return "-"
    first = sum(h[0][key] for h in sampled) / len(sampled)
    last = sum(h[-1][key] for h in sampled) / len(sampled)
    return f"{first:.{digits}f} → {last:.{digits}f}"


def _metrics(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


IFEVAL_COLUMNS = ("prompt_level_strict", "inst_level_strict", "prompt_level_loose", "inst_level_loose", "strict_mean")  # fmt: skip


def ifeval(*sources: str, labels: str) -> str:
    """IFEval's four numbers and their strict mean, one row per source: a JSON file of them (an
    evaluation's summary.json, `python -m hir.tasks.ifeval`'s output), or FILE#KEY for one entry
    of a file of several (results/ifeval-study/published.json); "-" where a source has none."""
    rows = []
    for source, label in zip(sources, labels.split(","), strict=True):
        path, _, key = source.partition("#")
        numbers = json.loads((ROOT / path).read_text())
        numbers = numbers[key] if key else numbers
        rows.append(
            [label, *(f"{numbers[c]:.2f}" if c in numbers else "-" for c in IFEVAL_COLUMNS)]
        )
    return render(["", "prompt strict", "instruction strict", "prompt loose", "instruction loose", "strict mean"], rows)  # fmt: skip


KINDS = {
    "include": include,
    "accuracy": accuracy,
    "comparison": comparison,
    "gain": gain,
    "premise": premise,
    "warmup": warmup,
    "runs": runs,
    "curves": curves,
    "speed": speed,
    "trl_grpo": trl_grpo,
    "greedy_segments": greedy_segments,
    "ifeval": ifeval,
}


def table_for(spec: str) -> str:
    kind, *words = shlex.split(spec)
    positional = [w for w in words if "=" not in w]
    options = dict(w.split("=", 1) for w in words if "=" in w)
    return KINDS[kind](*positional, **options)


def regenerate(text: str) -> tuple[str, list[str]]:
    """`text` with every marked table regenerated, and the specs of those that changed."""
    changed = []

    def replace(found: re.Match) -> str:
        table = table_for(found["spec"])
        if table != found["body"]:
            changed.append(found["spec"])
        return found.group(1) + table + found.group(4)

    return MARKED.sub(replace, text), changed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if a table differs"
    )
    args = parser.parse_args()
    stale = []
    for name in DOCUMENTS:
        path = ROOT / name
        text, changed = regenerate(path.read_text(encoding="utf-8"))
        stale += [f"{name}: {spec}" for spec in changed]
        if changed and not args.check:
            path.write_text(text, encoding="utf-8")
    for line in stale:
        print(("differs from its source: " if args.check else "rewrote: ") + line)
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
