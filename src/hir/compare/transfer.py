"""Does the separation transfer to the trained models? `hir compare --screen_trained N` screens
each run's trained model as `hir screen` screens a start (greedy accuracy under the correct- and
the wrong-answer instruction, the share of queries answered alike, pass@k, the log-prob margin
between the instructions on the model's own samples), on N queries of the evaluated split at the
comparison's sampling settings, into METHOD/seed-N/screen.json; `transfer.md` gives each
method's mean ± std over its screened seeds. A model that answers alike under both instructions,
and whose samples score alike under both, has no separation to transfer."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from hir.errors import HIRError
from hir.models import Policy
from hir.recipes.export import checkpoint_of
from hir.recipes.screen import ScreenSettings, commonest_greedy_answer, screen
from hir.runs.folders import RunFolder, run_folder
from hir.runs.report import mean_and_std
from hir.tasks import Task
from hir.trainers.run_config import RunConfig, SamplingConfig

# The screen's numbers averaged over seeds, in the table's order.
SCREENED_FIELDS = (
    "accuracy_correct_instruction", "accuracy_wrong_instruction", "same_answer_share",
    "pass_at_k", "sample_accuracy", "distinct_samples_per_query",
    "margin_correct_samples", "margin_wrong_samples",
)  # fmt: skip


def transfer_settings(configs: Mapping[str, RunConfig], limit: int, seed: int) -> ScreenSettings:
    """One screen for every row: the comparison's evaluated split and longest output, and the
    sampling settings of its first method that samples (the screen's defaults if none does)."""
    first = next(iter(configs.values()))
    sampling = next((c for c in configs.values() if isinstance(c, SamplingConfig)), None)
    sampled = {} if sampling is None else {
        name: getattr(sampling, name) for name in ("num_samples", "temperature", "top_k", "top_p")
    }  # fmt: skip
    return ScreenSettings(split=first.eval_split, limit=limit, max_new_tokens=first.max_new_tokens,
                          seed=seed, **sampled)  # fmt: skip


def screened_row(folder: Path) -> dict | None:
    """The screen row a run folder holds (with the screen's samples per query as `k`), if any."""
    path = RunFolder(folder).screen
    if not path.is_file():
        return None
    saved = json.loads(path.read_text(encoding="utf-8"))
    rows = saved.get("rows", [])
    return {**rows[0], "k": saved["settings"]["num_samples"]} if rows else None


def final_policy(
    folder: Path, load_start: Callable[[], Policy], trained: bool = True
) -> tuple[Policy, Path | None] | None:
    """(the start with the run's final checkpoint loaded, that checkpoint), or the start alone
    (`trained` False: a start row); None when the run's checkpoints are gone."""
    checkpoint = None
    if trained:
        try:
            checkpoint = checkpoint_of(folder)
        except HIRError:  # e.g. a run kept from a machine its checkpoints stayed on
            return None
    policy = load_start()
    if checkpoint is not None:
        policy.load_weights(checkpoint)
    return policy, checkpoint


def screen_run(
    folder: Path,
    task: Task,
    settings: ScreenSettings,
    load_start: Callable[[], Policy],
    record: dict,
    trained: bool = True,
) -> dict | None:
    """The screen row of the run in `folder`: read back when it was screened before, else
    measured on the start (`load_start()`) with the run's final checkpoint loaded (`trained`)
    and written to `folder`/screen.json and screen.md. None when the checkpoints are gone."""
    kept = screened_row(folder)
    if kept is not None:
        return kept
    loaded = final_policy(folder, load_start, trained)
    if loaded is None:
        return None
    policy, checkpoint = loaded
    screen(policy, [(task.name, task)], settings, folder,
           {**record, "run": None if checkpoint is None else str(checkpoint)})  # fmt: skip
    return screened_row(folder)


def transfer_rows(output_dir: Path, runs: Sequence[dict], methods: Sequence[str]) -> list[dict]:
    """Per method, in `methods`' order, the mean and std over its screened seeds of each of
    `SCREENED_FIELDS` (None where no seed has it), and the commonest greedy answers."""
    rows = []
    for method in methods:
        screened = [row for run in runs if run["method"] == method
                    if (row := screened_row(run_folder(output_dir, method, run["seed"])))]  # fmt: skip
        if not screened:
            continue
        row = {"method": method, "seeds": len(screened), "k": screened[0]["k"]}
        for name in SCREENED_FIELDS:
            row[name] = mean_and_std([r[name] for r in screened if r.get(name) is not None])
        commonest = [commonest_greedy_answer(r) for r in screened]
        row["commonest_greedy_share"] = mean_and_std([s for _, s in commonest if s is not None])
        row["commonest_greedy_answers"] = sorted({a for a, _ in commonest if a is not None})
        rows.append(row)
    return rows


def transfer_markdown(rows: Sequence[dict]) -> str:
    k = rows[0]["k"] if rows else "k"
    lines = [
        "| method | seeds | greedy acc. correct instruction | greedy acc. wrong instruction "
        "| same answer under both | commonest greedy answer's share | "
        f"pass@{k} | samples right | distinct samples per query | margin right samples "
        "| margin wrong samples |",
        "|" + "---|" * 11,
    ]
    for r in rows:
        answers = ", ".join(f'"{a}"' for a in r["commonest_greedy_answers"])
        commonest = _cell(r["commonest_greedy_share"]) + (f" ({answers})" if answers else "")
        cells = [_cell(r[name], signed=name.startswith("margin")) for name in SCREENED_FIELDS]
        cells.insert(3, commonest)  # after the share answered alike
        lines.append(f"| {r['method']} | {r['seeds']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: tuple[float, float] | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    mean, std = value
    return f"{mean:+.3f} ± {std:.3f}" if signed else f"{mean:.2f} ± {std:.2f}"
