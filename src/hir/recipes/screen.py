"""`hir screen`: will relabeling work on this model and task? A check before training.

For each task, on its validation split, with the sampling settings a run would use:
- greedy accuracy under the correct- and the wrong-answer instruction, and the share of queries
  answered the same under both (does the model follow the two instructions? HIR's premise);
- pass@k, the share of correct samples and of well-formed ones, distinct samples per query
  (are there correct samples to learn from, and wrong ones to contrast them with?);
- on the model's own samples, the log-probability margin between the instruction a sample
  satisfies and the other one, the quantity HIR's contrastive term trains
  (margin > 0: the model already tells the instructions apart on its outputs);
- the constant-answer baseline: the share of the commonest target (a model that learns one
  letter scores that much without learning the task), the commonest answer among the model's
  right samples and its share (when one answer makes most of them, learning from them teaches
  that answer), and for multiple-choice tasks chance,
  the mean of 1 / options (pass@k of a model that guesses is 1 - (1 - chance)^k: its right
  samples are guesses, and learning from them teaches the letters, not the task).
Each task gets a one-line reading from these numbers (`reading`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from hir.errors import HIRError
from hir.losses import sequence_scores
from hir.models import Policy
from hir.online.evaluate import commonest
from hir.online.sampling import SamplingSettings, sample_outputs
from hir.options import flag_help
from hir.recipes.premise import greedy_under_both, same_answer_share, top_answers
from hir.runs.fileio import atomic_write_json, atomic_write_text
from hir.runs.folders import SCREEN, SCREEN_MD
from hir.runs.versions import library_versions
from hir.tasks import Task

# Reading thresholds (docs/guide.md, "Screening a task"): a run learns from its own samples when
# some but not all are correct, and most have the answer's shape.
PASS_AT_K_RANGE = (0.2, 0.9)
MIN_WELL_FORMED = 0.5
PREMISE_GAP = 0.15  # greedy accuracy, correct- minus wrong-answer instruction: premise present
WEAK_PREMISE_GAP = 0.05
AT_CHANCE_MARGIN = 0.05  # well-formed samples' accuracy within this of chance: it guesses
# One answer makes this share of the right samples (it is what they teach), or of the greedy
# answers (the model gives it whatever the query).
ONE_ANSWER_SHARE = 0.5


@dataclass
class ScreenSettings(SamplingSettings):
    """What `hir screen` measures on, and how it samples (`SamplingSettings`)."""

    split: str = field(default="validation", metadata=flag_help("split screened (tune on validation)"))  # fmt: skip
    limit: int = field(default=40, metadata=flag_help("queries per task (noise ~0.5/sqrt(N))"))
    max_new_tokens: int = field(default=32, metadata=flag_help("longest output"))
    batch_size: int = field(default=32, metadata=flag_help("queries per generate call"))
    seed: int = field(default=0, metadata=flag_help("seeds the sampling (per task)"))
    sampling_grid: str = field(
        default="",
        metadata=flag_help("more sampling settings to measure, TEMPERATURE/TOP_P pairs, e.g. "
                           "'0.5/1.0,0.7/0.9,1.0/0.9': pass@k and well-formed samples at each"),
    )  # fmt: skip

    def examples(self, task: Task) -> list:
        """The screened examples of `task`: the first `limit` of `split`."""
        return task.split(self.split)[: self.limit]

    def grid(self) -> list[tuple[float, float]]:
        """The (temperature, top_p) pairs of `sampling_grid`."""
        pairs = []
        for item in filter(None, (i.strip() for i in self.sampling_grid.split(","))):
            temperature, slash, top_p = item.partition("/")
            try:
                pairs.append((float(temperature), float(top_p) if slash else 1.0))
            except ValueError:
                raise HIRError(
                    f"--sampling_grid: {item!r} is not TEMPERATURE/TOP_P, e.g. 0.7/0.9"
                ) from None
        return pairs

    def __post_init__(self) -> None:
        for name in ("limit", "num_samples", "max_new_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise HIRError(f"--{name} must be >= 1, got {getattr(self, name)}")
        for ok, message in self.sampling_checks():
            if not ok:
                raise HIRError(f"--{message}")
        if not 0 <= self.seed < 2**32:
            raise HIRError(f"--seed must be in [0, 2**32), got {self.seed}")
        if self.split not in ("train", "validation", "test"):
            raise HIRError(f"--split must be train, validation or test, got {self.split!r}")
        for temperature, top_p in self.grid():
            if temperature <= 0 or not 0 < top_p <= 1:
                raise HIRError(f"--sampling_grid: temperature {temperature} must be > 0 and "
                               f"top_p {top_p} in (0, 1]")  # fmt: skip


def screen_task(policy: Policy, task: Task, settings: ScreenSettings) -> dict:
    """One task's screen row (see the module's docstring)."""
    began = time.perf_counter()
    task = task.for_format(policy.chat)
    examples = settings.examples(task)
    if not examples:
        raise HIRError(f"task {task.name} has no {settings.split} examples to screen")
    greedy = greedy_under_both(policy, task, settings.split, settings.max_new_tokens,
                               settings.limit, settings.batch_size)  # fmt: skip
    samples = _samples(policy, task, examples, settings, settings.temperature, settings.top_p)
    correct = [s.score >= 1.0 for s in samples]
    margins = instruction_margins(policy, task, examples, samples, settings.batch_size)
    # The margin of each sample's own (hindsight) instruction over the other one.
    separation = [m if ok else -m for m, ok in zip(margins, correct)]
    constant, constant_share = constant_answer(examples)
    row = {
        "task": task.name,
        "description": task.description,
        "examples": len(examples),
        "constant_answer": constant,
        "constant_answer_share": constant_share,
        "chance": chance_level(examples),
        "accuracy_correct_instruction": greedy["correct"].accuracy,
        "accuracy_wrong_instruction": greedy["wrong"].accuracy,
        "same_answer_share": same_answer_share(greedy),
        "well_formed_greedy": greedy["correct"].well_formed,
        **sampling_summary(task, examples, samples),
        "mean_sample_score": _mean([s.score for s in samples]),
        "margin_correct_samples": _mean([m for m, ok in zip(margins, correct) if ok]),
        "margin_wrong_samples": _mean([m for m, ok in zip(margins, correct) if not ok]),
        "separation": _mean(separation),
        "separated_share": _mean([s > 0 for s in separation]),
        "top_greedy_answers": top_answers(greedy["correct"].records, most=3),
    }
    row["sampling_grid"] = [
        {"temperature": temperature, "top_p": top_p,
         **sampling_summary(task, examples, _samples(policy, task, examples, settings, temperature, top_p))}
        for temperature, top_p in settings.grid()
    ]  # fmt: skip
    row["wall_seconds"] = round(time.perf_counter() - began, 1)
    row["reading"] = reading(row, settings.num_samples)
    return row


def _samples(policy, task, examples, settings: ScreenSettings, temperature: float, top_p: float):
    torch.manual_seed(settings.seed)  # each setting's samples alike, whatever ran before
    return sample_outputs(
        policy, task, examples, instruction=task.correct_instruction, iteration=0,
        num_samples=settings.num_samples, temperature=temperature, top_k=settings.top_k,
        top_p=top_p, max_new_tokens=settings.max_new_tokens, batch_size=settings.batch_size,
    )  # fmt: skip


def sampling_summary(task: Task, examples: Sequence, samples: Sequence) -> dict:
    """pass@k, the share of learnable prompts (some of their samples right, some wrong: the only
    prompts filtering, GRPO and NFT learn anything from; duplicates aside, a pass rate strictly
    between 0 and 1 at k), the share of correct and of well-formed samples, distinct samples per
    query, and the commonest answer among the right samples with its share of them."""
    correct = [s.score >= 1.0 for s in samples]
    right = [s for s, ok in zip(samples, correct) if ok]
    wrong_queries = {s.query_id for s, ok in zip(samples, correct) if not ok}
    top_right, top_share = commonest(s.answer for s in right)
    return {
        "pass_at_k": len({s.query_id for s in right}) / len(examples),
        "learnable_share": len({s.query_id for s in right} & wrong_queries) / len(examples),
        "top_right_answer": top_right,
        "top_right_answer_share": top_share,
        "sample_accuracy": _mean(correct),
        "well_formed_samples": _mean([task.is_well_formed(s.answer or "") for s in samples]),
        "distinct_samples_per_query": len(samples) / len(examples),
    }


@torch.no_grad()
def instruction_margins(
    policy: Policy, task: Task, examples: Sequence, samples: Sequence, batch_size: int
) -> list[float]:
    """Per sample: mean token log-prob of the output under the correct-answer instruction minus
    under the wrong-answer one (the pairwise contrastive term's margin, from the correct side)."""
    queries = {e.id: e.query for e in examples}
    margins: list[float] = []
    for begin in range(0, len(samples), batch_size):
        batch = samples[begin : begin + batch_size]
        prompts = [task.prompt(queries[s.query_id], task.correct_instruction) for s in batch]
        prompts += [task.prompt(queries[s.query_id], task.wrong_instruction) for s in batch]
        outputs = [s.output for s in batch] * 2
        scores = sequence_scores(policy.statistics_for(prompts, outputs)).float().cpu()
        margins += (scores[: len(batch)] - scores[len(batch) :]).tolist()
    return margins


def constant_answer(examples: Sequence) -> tuple[str, float]:
    """The commonest target and its share: what always giving one answer scores."""
    return commonest(e.target for e in examples)


def chance_level(examples: Sequence) -> float | None:
    """Mean of 1 / number of options over multiple-choice examples; None for other tasks."""
    counts = [len(e.meta.get("options", ())) for e in examples]
    if not all(counts):
        return None
    return sum(1 / c for c in counts) / len(counts)


def reading(row: dict, k: int) -> str:
    """One line: is HIR's premise there, and can a run learn from the model's own samples?"""
    gap = row["accuracy_correct_instruction"] - row["accuracy_wrong_instruction"]
    if gap >= PREMISE_GAP and row["separation"] > 0:
        premise = "present"
    elif gap >= WEAK_PREMISE_GAP or row["separated_share"] >= 0.6:
        premise = "weak"
    else:
        premise = "absent"
    low, high = PASS_AT_K_RANGE
    if row["well_formed_samples"] < MIN_WELL_FORMED:
        learnable = (
            f"not learnable from its own samples: {row['well_formed_samples']:.0%} well-formed"
        )
    elif row["pass_at_k"] < low:
        learnable = (
            f"not learnable from its own samples: pass@{k} {row['pass_at_k']:.2f}, too few right"
        )
    elif _at_chance(row):
        learnable = (f"samples at chance ({_well_formed_accuracy(row):.2f} of the well-formed "
                     f"right, chance {row['chance']:.2f}): its right samples are guesses")  # fmt: skip
    elif _mostly_one_answer(row):
        learnable = (f"{row['top_right_answer_share']:.0%} of its right samples are one answer, "
                     f"{row['top_right_answer']} (pass@{k} {row['pass_at_k']:.2f}): learning from "
                     "them teaches that answer")  # fmt: skip
    elif row["pass_at_k"] > high:
        learnable = f"little to learn: pass@{k} {row['pass_at_k']:.2f}"
    else:
        learnable = f"learnable from its own samples (pass@{k} {row['pass_at_k']:.2f})"
    line = (f"premise {premise} (gap {gap:+.2f}, same answer {row['same_answer_share']:.2f}, "
            f"separation {row['separation']:+.3f}); {learnable}")  # fmt: skip
    if row["constant_answer_share"] >= 0.5:
        line += (f"; one answer, {row['constant_answer']}, scores {row['constant_answer_share']:.2f}"
                 ": shuffle the options")  # fmt: skip
    elif row["accuracy_correct_instruction"] <= row["constant_answer_share"]:
        line += f"; greedy at or below the constant answer ({row['constant_answer_share']:.2f})"
    answer, share = commonest_greedy_answer(row)
    if share is not None and share >= ONE_ANSWER_SHARE:
        line += f"; greedy answers {answer} to {share:.0%} of the queries"
    return line


def commonest_greedy_answer(row: dict) -> tuple[str | None, float | None]:
    """The answer greedy decoding gives most often and its share of the queries (None for rows
    screened without it)."""
    counts = row.get("top_greedy_answers")
    if not counts:
        return None, None
    answer = max(counts, key=counts.get)
    return answer, counts[answer] / row["examples"]


def _well_formed_accuracy(row: dict) -> float:
    """The share of well-formed samples that are right (a right answer is well-formed)."""
    return row["sample_accuracy"] / max(row["well_formed_samples"], 1e-9)


def _mostly_one_answer(row: dict) -> bool:
    """Most right samples are one answer (rows screened before this number existed lack it)."""
    share = row.get("top_right_answer_share")
    return share is not None and share >= ONE_ANSWER_SHARE


def _at_chance(row: dict) -> bool:
    chance = row.get("chance")
    return chance is not None and _well_formed_accuracy(row) <= chance + AT_CHANCE_MARGIN


def tasks_to_screen(
    spec: str,
    load: Callable[[str, int | None], Task],
    settings: ScreenSettings,
    shuffle_options: int | None = None,
) -> tuple[list[str], list[tuple[str, Task]]]:
    """The task names of a comma-separated `spec` ("paper": the twelve BIG-bench tasks,
    "synthetic": the synthetic ones), and the (row name, task) pairs to screen, loaded with
    `load(name, shuffle seed)`. With `shuffle_options`, a task where one answer holds half the
    screened split gets a second row with its options shuffled."""
    from hir.tasks.bigbench import PAPER_TASKS
    from hir.tasks.synthetic import SYNTHETIC_TASKS

    groups = {"paper": [f"bigbench/{n}" for n in PAPER_TASKS],
              "synthetic": [f"synthetic/{n}" for n in SYNTHETIC_TASKS]}  # fmt: skip
    names = list(dict.fromkeys(
        t for n in spec.split(",") if n.strip() for t in groups.get(n.strip(), [n.strip()])
    ))  # fmt: skip
    tasks = []
    for name in names:
        task = load(name, None)
        tasks.append((name, task))
        examples = settings.examples(task)
        if shuffle_options is not None and examples and constant_answer(examples)[1] >= 0.5:
            row = f"{name} (options shuffled, seed {shuffle_options})"
            tasks.append((row, load(name, shuffle_options)))
    return names, tasks


def screen(
    policy: Policy,
    tasks: Sequence[tuple[str, Task]],
    settings: ScreenSettings,
    output_dir: str | Path,
    record: dict,
) -> list[dict]:
    """Screen each (row name, task), writing screen.json and screen.md after each one; rows
    already in screen.json with the same settings are kept, so a killed screen continues.
    Every row's chance level and reading are derived again with today's rule."""
    output_dir = Path(output_dir)
    path = output_dir / SCREEN
    rows = _previous_rows(path, settings, record)
    for name, task in tasks:
        if name in rows:
            print(f"hir screen: {name}: screened before, kept")
            continue
        print(f"hir screen: {name}")
        rows[name] = {"row": name, **screen_task(policy, task, settings)}
        print(f"  {rows[name]['reading']}")
        _write(path, [rows[n] for n, _ in tasks if n in rows], settings, record)
    ordered = []
    for name, task in tasks:
        examples = settings.examples(task)
        row = {**rows[name], "chance": chance_level(examples)}
        ordered.append({**row, "reading": reading(row, settings.num_samples)})
    _write(path, ordered, settings, record)
    return ordered


def _write(path: Path, rows: list[dict], settings: ScreenSettings, record: dict) -> None:
    atomic_write_json(path, {**record, "settings": asdict(settings), "rows": rows,
                             "versions": library_versions()})  # fmt: skip
    atomic_write_text(path.parent / SCREEN_MD, screen_table(rows, settings.num_samples))


def _previous_rows(path: Path, settings: ScreenSettings, record: dict) -> dict[str, dict]:
    if not path.is_file():
        return {}
    previous = json.loads(path.read_text(encoding="utf-8"))
    same_model = all(previous.get(key) == record.get(key) for key in ("model", "run"))
    # A setting added since that screen ran had its default then.
    earlier = {**asdict(ScreenSettings()), **previous.get("settings", {})}
    if earlier != asdict(settings) or not same_model:
        raise HIRError(
            f"{path} holds a screen of other settings or another model: give another "
            "--output_dir, or remove that file to start over"
        )
    return {row["row"]: row for row in previous.get("rows", [])}


def screen_table(rows: Sequence[dict], k: int) -> str:
    header = (
        f"| task | const. | chance | greedy acc. correct / wrong | same | pass@{k} | learnable "
        "| samples right (commonest right answer) "
        "| well-formed | margin right / wrong samples | reading |"
    )
    lines = [header, "|" + "---|" * 11]
    for r in rows:
        chance = "-" if r.get("chance") is None else f"{r['chance']:.2f}"
        share = r.get("top_right_answer_share")  # rows screened before it lack it
        top = "" if share is None else f" ({r['top_right_answer']}: {share:.0%})"
        learnable = r.get("learnable_share")  # rows screened before it lack it
        learnable = "-" if learnable is None else f"{learnable:.2f}"
        lines.append(
            f"| {r['row']} | {r['constant_answer_share']:.2f} | {chance} | "
            f"{r['accuracy_correct_instruction']:.2f} / {r['accuracy_wrong_instruction']:.2f} | "
            f"{r['same_answer_share']:.2f} | {r['pass_at_k']:.2f} | {learnable} | "
            f"{r['sample_accuracy']:.2f}{top} | "
            f"{r['well_formed_samples']:.2f} | {_signed(r['margin_correct_samples'])} / "
            f"{_signed(r['margin_wrong_samples'])} | {r['reading']} |"
        )
    return "\n".join(lines) + "\n" + grid_table(rows, k)


def grid_table(rows: Sequence[dict], k: int) -> str:
    """pass@k / samples right / well-formed at each setting of the sampling grid, if any."""
    settings = (
        [(g["temperature"], g["top_p"]) for g in rows[0].get("sampling_grid", [])] if rows else []
    )
    if not settings:
        return ""
    header = "| task | " + " | ".join(f"T {t} top-p {p}" for t, p in settings) + " |"
    lines = ["", f"pass@{k} / samples right / well-formed, per sampling setting:", "", header,
             "|" + "---|" * (len(settings) + 1)]  # fmt: skip
    for r in rows:
        cells = [f"{g['pass_at_k']:.2f} / {g['sample_accuracy']:.2f} / {g['well_formed_samples']:.2f}"
                 for g in r["sampling_grid"]]  # fmt: skip
        lines.append(f"| {r['row']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _mean(values: Sequence) -> float | None:
    return sum(values) / len(values) if values else None


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f}"
