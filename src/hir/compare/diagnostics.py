"""What a comparison's logs say about why its methods came out as they did.

Per method, averaged over seeds, the first and last training iteration of: the accuracy and
well-formedness of the training samples, distinct samples per query, the share of the buffer
relabeled with an instruction other than the correct-answer one (HIR), HIR's contrastive loss
(ln 2 = 0.693 when the model does not tell the instructions apart), the policy's entropy and
PPO's KL to the start. And the first and last evaluation's commonest answer: the share of the
evaluated queries that got it (1.0: one answer to every query, a collapsed policy) and which
answer it was at the end.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter

LN2 = math.log(2)

# (metric, column title); a method that does not log a metric shows "-".
COLUMNS = (
    ("sample_accuracy", "samples correct"),
    ("sample_well_formed", "samples well-formed"),
    ("unique_samples_per_query", "distinct samples per query"),
    ("relabeled_other_share", 'relabeled "wrong"'),
    ("loss_contrastive", f"contrastive (ln 2 = {LN2:.3f})"),
    ("entropy", "entropy"),
    ("kl", "KL to start"),
)
COMMONEST_ANSWER_TITLE = "evaluated queries given the commonest answer"


def with_derived_metrics(record: dict) -> dict:
    """A metrics record plus the share relabeled away from the correct-answer instruction."""
    if "relabeled_target_share" in record:
        return {**record, "relabeled_other_share": 1.0 - record["relabeled_target_share"]}
    return record


def first_and_last(histories: list[list[dict]], metric: str) -> tuple[float, float] | None:
    """Mean over runs of `metric` at the first and the last training iteration that logged
    it (iteration 0, the untouched start, logs no training metric); None if no run logs it."""
    firsts, lasts = [], []
    for history in histories:
        records = [with_derived_metrics(r) for r in history if r.get("iteration", 0) >= 1]
        values = [r[metric] for r in records if metric in r]
        if values:
            firsts.append(values[0])
            lasts.append(values[-1])
    if not firsts:
        return None
    return statistics.mean(firsts), statistics.mean(lasts)


def commonest_answers(histories: list[list[dict]]) -> dict | None:
    """Over the runs that log it: the mean share of the commonest answer at the first and the
    last evaluation, the last evaluation's commonest answers (most runs first) and how many
    runs logged it; None if none did."""
    firsts, lasts, answers = [], [], Counter()
    for history in histories:
        evaluated = [r for r in history if r.get("commonest_answer_share") is not None]
        if evaluated:
            firsts.append(evaluated[0]["commonest_answer_share"])
            lasts.append(evaluated[-1]["commonest_answer_share"])
            answers[evaluated[-1]["commonest_answer"]] += 1
    if not firsts:
        return None
    return {"first": statistics.mean(firsts), "last": statistics.mean(lasts),
            "answers": [a for a, _ in answers.most_common()], "runs": len(firsts)}  # fmt: skip


def diagnostics_rows(histories_by_method: dict[str, list[list[dict]]]) -> list[dict]:
    """One row per method: `{"method", "runs", metric: (first, last) or None, ...,
    "commonest_answer": commonest_answers(...)}`."""
    rows = []
    for method, histories in histories_by_method.items():
        row = {"method": method, "runs": len(histories)}
        row.update({metric: first_and_last(histories, metric) for metric, _ in COLUMNS})
        row["commonest_answer"] = commonest_answers(histories)
        rows.append(row)
    return rows


def commonest_answer_cell(summary: dict | None, runs: int) -> str:
    """E.g. `0.30 → 1.00 ("1")`, with the number of runs when not all logged it."""
    if summary is None:
        return "-"
    answers = "/".join(f'"{a}"' for a in summary["answers"])
    cell = f"{summary['first']:.2f} → {summary['last']:.2f} ({answers})"
    return cell if summary["runs"] == runs else f"{cell}, {summary['runs']} of {runs} runs"


def diagnostics_markdown(rows: list[dict]) -> str:
    """The rows as a Markdown table, each cell "first -> last" (means over runs)."""
    titles = [title for _, title in COLUMNS] + [COMMONEST_ANSWER_TITLE]
    lines = ["| method | runs | " + " | ".join(titles) + " |", "|---" * (len(titles) + 2) + "|"]
    for row in rows:
        cells = []
        for metric, _ in COLUMNS:
            pair = row[metric]
            cells.append("-" if pair is None else f"{pair[0]:.3f} → {pair[1]:.3f}")
        cells.append(commonest_answer_cell(row["commonest_answer"], row["runs"]))
        lines.append(f"| {row['method']} | {row['runs']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
