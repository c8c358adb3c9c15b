"""The one owner of what a hir folder holds: the names of the files a run, a comparison, an
evaluation and a screen write, and which command may write where.

Every folder a hir command writes carries a marker (`hir-folder.json`: what the folder is and
which command made it). Before any model loads, a command checks its target with
`check_folder`: a folder that is absent or empty is free; a folder of the same kind may be
written again (a run resumed or, with `--overwrite_output_dir`, started over; an evaluation
redone); anything else (a model folder, another command's results, a folder of the user's
files) is refused in one line naming what is there. Folders written before markers existed
are recognised by their files, so that old runs resume and old comparisons continue.

    folder = RunFolder(output_dir)
    folder.metrics, folder.checkpoints, folder.summary      # the file names, in one place
    check_folder(output_dir, "run", "hir train")            # before the work
    mark_folder(output_dir, "run", "hir train")             # when the first file is written
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from hir.errors import HIRError
from hir.runs.fileio import atomic_write_json, require_writable_folder

MARKER = "hir-folder.json"
LOCK = ".hir.lock"  # `hir.runs.lock`: held while a process writes the folder

# What each kind of folder is, as the refusal names it.
KINDS = {
    "run": "a hir training run",
    "comparison": "a hir comparison",
    "instructgpt": "a hir InstructGPT pipeline",
    "evaluation": "a hir evaluation",
    "screen": "a hir screen",
    "model": "a model folder written by hir",
}


class RunFolder:
    """A training run's folder (`hir train`, each run of `hir compare`, the demo)."""

    # What a run writes in its folder besides its checkpoints: what starting over removes.
    FILES = ("buffer.jsonl", "metrics.jsonl", "summary.json", "accuracy.png")

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.config = self.root / "config.json"  # the run's settings and library versions
        self.metrics = self.root / "metrics.jsonl"  # one record per iteration
        self.buffer = self.root / "buffer.jsonl"  # the replay buffer
        self.summary = self.root / "summary.json"  # written when the run ends
        self.accuracy_plot = self.root / "accuracy.png"
        self.checkpoints = self.root / "checkpoints"  # iteration-NNNN/, each whole or absent
        self.compare_record = self.root / RUN_RECORD  # a compared run's record, once finished
        self.screen = self.root / SCREEN  # a compared run's model screened (`--screen_trained`)

    def run_id(self) -> str | None:
        """The run's identity as its config record holds it, which each of its checkpoints'
        manifests names (None: no record, or a run from before run ids)."""
        record = _read_json(self.config)
        return record.get("run_id") if isinstance(record, dict) else None


class ComparisonFolder:
    """A comparison's folder (`hir compare`): a run folder per method and seed, the table."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.table = self.root / "comparison.md"
        self.table_csv = self.root / "comparison.csv"
        self.paired = self.root / "paired.md"  # every pair of methods, paired by seed
        self.record = self.root / COMPARISON_JSON  # what was compared, the table, every run
        self.diagnostics = self.root / "diagnostics.md"
        self.transfer = self.root / "transfer.md"
        self.plot_by_iteration = self.root / "accuracy_vs_iteration.png"
        self.plot_by_time = self.root / "accuracy_vs_wall_time.png"

    def run(self, method: str, seed: int) -> RunFolder:
        """`method`'s run with `seed` ("start" for the start's own preparation)."""
        return RunFolder(self.root / method / f"seed-{seed}")


# In each checkpoint folder (`hir.runs.checkpoint`).
CHECKPOINT_MANIFEST = "COMPLETE.json"
TRAINING_STATE = "training_state.pt"
VALUE_STATE = "value_state.pt"  # PPO's value model and its optimizer
HISTORY = "history.jsonl"
BUFFER = "buffer.jsonl"

COMPARISON_JSON = "comparison.json"
TABLE_LOCK = ".hir.table.lock"  # held while a comparison's table is written
RUN_RECORD = "compare_run.json"

# An evaluation's, a screen's and a warm-up's files.
PREDICTIONS = "predictions.jsonl"
EVALUATION_SUMMARY = "summary.json"
PREMISE = "premise.json"
SCREEN = "screen.json"
SCREEN_MD = "screen.md"
WARMUP_RECORD = "warmup.json"


def run_folder(output_dir: str | os.PathLike, method: str, seed: int) -> Path:
    """The root of `ComparisonFolder(output_dir).run(method, seed)`."""
    return ComparisonFolder(output_dir).run(method, seed).root


@dataclass(frozen=True)
class Occupant:
    """What a folder holds: `kind` (a key of `KINDS`, or None for what hir did not write) and
    the command that made it, as its marker says (None for a folder from before markers)."""

    kind: str | None
    made_by: str | None
    description: str


def occupant(folder: str | os.PathLike) -> Occupant | None:
    """What `folder` holds; None where it is absent or empty."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    # The lock and an atomic write's temporary file say nothing of what a folder is.
    names = sorted(p.name for p in folder.iterdir()
                   if p.name not in (LOCK, TABLE_LOCK) and not (p.name.startswith(".") and p.name.endswith(".tmp")))  # fmt: skip
    if not names:
        return None
    marker = _read_json(folder / MARKER)
    if isinstance(marker, dict) and marker.get("kind") in KINDS:
        made_by = marker.get("made_by")
        return Occupant(marker["kind"], made_by, f"{KINDS[marker['kind']]} (made by {made_by})")
    kind = _kind_before_markers(folder, names)
    if kind is not None:
        return Occupant(kind, None, KINDS[kind])
    model_file = _model_file(names)
    if model_file is not None:
        return Occupant(None, None, f"a model ({model_file})")
    shown = ", ".join(repr(n) for n in names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")  # fmt: skip
    return Occupant(None, None, f"files hir did not write ({shown})")


def check_folder(
    folder: str | os.PathLike,
    kind: str,
    flag: str = "--output_dir",
    made_by: str | None = None,
) -> Occupant | None:
    """Refuse, before any work, a target that cannot be written or holds something other than a
    folder of `kind` (and, with `made_by`, one that command made). Returns what is there."""
    require_writable_folder(folder, flag)
    found = occupant(folder)
    if found is None:
        return None
    same = found.kind == kind and (made_by is None or found.made_by == made_by)
    if not same:
        wanted = KINDS[kind] if made_by is None else f"{KINDS[kind]} of `{made_by}`"
        raise HIRError(
            f"{flag} {folder} holds {found.description}, not {wanted}: hir never writes over "
            f"what it did not make there; choose another {flag}"
        )
    return found


def mark_folder(folder: str | os.PathLike, kind: str, made_by: str) -> None:
    """Record in `folder` (created if need be) that it is a folder of `kind` made by `made_by`;
    an existing marker stays (a resumed run keeps its maker)."""
    folder = Path(folder)
    if _read_json(folder / MARKER) is not None:
        return
    atomic_write_json(folder / MARKER, {"kind": kind, "made_by": made_by,
                                        "created": time.strftime("%Y-%m-%d %H:%M:%S")})  # fmt: skip


def _kind_before_markers(folder: Path, names: list[str]) -> str | None:
    """The kind of a folder hir wrote before markers existed, from its files."""
    record = _read_json(folder / "config.json")
    if isinstance(record, dict) and {"config", "versions"} <= set(record):
        return "run"
    if "checkpoints" in names or "metrics.jsonl" in names:
        return "run"
    if COMPARISON_JSON in names or any((folder / n).is_dir() and any((folder / n).glob("seed-*"))
                                       for n in names):  # fmt: skip
        return "comparison"
    if {"sft", "reward_model"} <= set(names):
        return "instructgpt"
    if PREDICTIONS in names or PREMISE in names:
        return "evaluation"
    if SCREEN in names:
        return "screen"
    return None


_MODEL_FILES = ("config.json", "model.safetensors", "pytorch_model.bin", "adapter_config.json",
                "tokenizer.json", "tokenizer_config.json")  # fmt: skip


def _model_file(names: list[str]) -> str | None:
    """The first of `names` that makes a folder a model's (config, weights, tokenizer), if any."""
    return next((n for n in names if n in _MODEL_FILES or n.endswith((".safetensors", ".gguf", ".bin"))), None)  # fmt: skip


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
