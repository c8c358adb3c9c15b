"""Checkpoints, one folder per iteration: model and tokenizer (Hugging Face format), optimizer
and scheduler, every RNG state, the replay buffer and the run's history. A folder is written
under a temporary name and renamed into place, so a run killed at any moment leaves either the
previous checkpoint or the new one, complete."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from hir.runs.crash_points import crash_point
from hir.runs.fileio import atomic_write_json, file_sha256
from hir.runs.folders import CHECKPOINT_MANIFEST, TRAINING_STATE, RunFolder

_NAME = re.compile(r"^iteration-(\d{4,})$")


def capture_rng(generator: torch.Generator, py_rng: random.Random) -> dict:
    """Every RNG state as tensors, lists and numbers only, so that the training state loads
    with `torch.load(weights_only=True)` (no pickled code runs on resume)."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    return {
        "python": _plain(random.getstate()),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generator": generator.get_state(),
        "trainer_random": _plain(py_rng.getstate()),
    }


def restore_rng(state: dict, generator: torch.Generator, py_rng: random.Random) -> None:
    random.setstate(_python_state(state["python"]))
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    generator.set_state(state["generator"])
    py_rng.setstate(_python_state(state["trainer_random"]))


def _plain(python_state: tuple) -> list:
    version, internal, gauss = python_state
    return [version, list(internal), gauss]


def _python_state(plain: list) -> tuple:
    version, internal, gauss = plain
    return (version, tuple(internal), gauss)


def save_checkpoint(
    root: Path, iteration: int, write_contents, keep: int, run_id: str | None = None
) -> Path:
    """`write_contents(folder)` writes the checkpoint's files into a fresh folder; it becomes
    `root/iteration-NNNN` in one rename. Only the `keep` newest checkpoints stay. Its manifest
    names the run (`run_id`) and the iteration, so that a checkpoint of another run, or one
    renamed, is never taken for this run's."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"iteration-{iteration:04d}"
    staging = root / f".staging-{final.name}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        write_contents(staging)
        crash_point("checkpoint_staging")
        # Written last: what every file must be, so that a resume can tell a damaged checkpoint.
        atomic_write_json(
            staging / CHECKPOINT_MANIFEST,
            {"run": run_id, "iteration": iteration, "files": manifest(staging)},
        )
    except BaseException:  # a full disk, an interrupt: no half-written folder stays behind
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if final.exists():  # the same iteration done again after a resume
        stale = root / f".stale-{final.name}"
        shutil.rmtree(stale, ignore_errors=True)
        os.replace(final, stale)
        shutil.rmtree(stale)
    os.replace(staging, final)
    crash_point("checkpoint_pruning")
    for old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def manifest(folder: Path) -> dict[str, dict]:
    """Size and sha256 of every file in `folder`, and the line count of its JSONL files."""
    entries = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        entry = {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
        if path.suffix == ".jsonl":
            entry["lines"] = sum(1 for line in path.read_bytes().splitlines() if line.strip())
        entries[str(path.relative_to(folder))] = entry
    return entries


def checkpoint_problem(folder: Path, run_id: str | None = None) -> str | None:
    """Why `folder` is not an intact checkpoint of the run `run_id` (None: of any run): a file
    missing, cut or changed since it was written, a manifest that names another run, or
    another iteration than the folder's name; else None. Checkpoints written before manifests
    (or run ids) existed are taken as they are."""
    try:
        recorded = json.loads((folder / CHECKPOINT_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"its {CHECKPOINT_MANIFEST} is missing or unreadable"
    written_by = recorded.get("run")
    if run_id is not None and written_by is not None and written_by != run_id:
        return f"it belongs to another run (run id {written_by}; this run's is {run_id})"
    named = _NAME.match(folder.name)
    if named and "iteration" in recorded and int(named.group(1)) != recorded["iteration"]:
        return f"its manifest says iteration {recorded['iteration']}: the folder was renamed"
    for name, entry in recorded.get("files", {}).items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        size = path.stat().st_size
        if size != entry["bytes"]:
            return f"{name} has {size} bytes, {entry['bytes']} were written"
        if file_sha256(path) != entry["sha256"]:
            return f"{name} changed since it was written (sha256 differs)"
    return None


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    if not root.is_dir():
        return []
    found = [
        p for p in root.iterdir() if _NAME.match(p.name) and (p / CHECKPOINT_MANIFEST).is_file()
    ]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))


def latest_checkpoint(root: Path) -> Path | None:
    checkpoints = list_checkpoints(root)
    return checkpoints[-1] if checkpoints else None


def save_training_state(folder: Path, optimizer_state: dict, scheduler, rng: dict) -> None:
    """`optimizer_state`: the optimizer's `state_dict()` (a sharded model's gathered whole,
    `hir.models.speed.sharding.full_optimizer_state`)."""
    torch.save(
        {"optimizer": optimizer_state, "scheduler": scheduler.state_dict(), "rng": rng},
        folder / TRAINING_STATE,
    )


def load_training_state(folder: Path) -> dict:
    # weights_only: a checkpoint from someone else cannot run code when it is loaded.
    return torch.load(folder / TRAINING_STATE, weights_only=True)


def remove_run_files(output_dir: Path) -> None:
    """Start over in `output_dir`: remove what a run wrote there (its iteration checkpoints,
    buffer, metrics, summary and plot), and nothing else."""
    root = RunFolder(output_dir).checkpoints
    if root.is_dir():
        for folder in root.iterdir():
            name = folder.name.removeprefix(".staging-").removeprefix(".stale-")
            if folder.is_dir() and _NAME.match(name):
                shutil.rmtree(folder)
    for name in RunFolder.FILES:
        (output_dir / name).unlink(missing_ok=True)
