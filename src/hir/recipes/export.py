"""`hir export RUN`: a run's trained model as a folder other tools load.

A run (or one of its checkpoints) that trained all weights is already an ordinary model folder;
a LoRA run's checkpoint holds the adapter only. `merge=True` folds the adapter into the base
model's weights (the base is the one named in the adapter's config), giving a plain
transformers folder; without it the adapter is written as peft saves it.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from hir.errors import HIRError
from hir.models.adapters import ADAPTER_WEIGHTS
from hir.runs.checkpoint import checkpoint_problem, list_checkpoints
from hir.runs.folders import (
    BUFFER,
    CHECKPOINT_MANIFEST,
    HISTORY,
    MARKER,
    TRAINING_STATE,
    VALUE_STATE,
    RunFolder,
)
from hir.runs.staging import check_target, staged_folder


def checkpoint_of(run_or_checkpoint: str | Path) -> Path:
    """The intact checkpoint folder a path names: itself, or a run folder's newest intact one
    (its manifest checked: no file missing, cut or changed, and written by this run under this
    iteration's name)."""
    path = Path(run_or_checkpoint)
    if (path / CHECKPOINT_MANIFEST).is_file():
        problem = checkpoint_problem(path)
        if problem:
            raise HIRError(f"checkpoint {path} is damaged: {problem}; give another checkpoint")
        return path
    run = RunFolder(path)
    found = list_checkpoints(run.checkpoints)
    if not found:
        raise HIRError(
            f"{path} is neither a run folder with checkpoints nor a checkpoint: give the "
            "--output_dir of a `hir train` run or one of its checkpoints/iteration-NNNN folders"
        )
    for folder in reversed(found):
        problem = checkpoint_problem(folder, run.run_id())
        if problem is None:
            return folder
        print(f"hir: skipping checkpoint {folder.name}: {problem}", file=sys.stderr)
    raise HIRError(
        f"no intact checkpoint in {run.checkpoints} (all failed their checks, see above)"
    )


def export_model(
    run_or_checkpoint: str | Path, output_dir: str | Path, merge: bool, overwrite: bool = False
) -> Path:
    """The model of a run's newest intact checkpoint (or of the checkpoint named) as a folder:
    staged under a name this call made, then renamed into place (`hir.runs.staging`)."""
    check_target(output_dir, overwrite)  # before the slow part
    source = checkpoint_of(run_or_checkpoint)
    with staged_folder(output_dir, overwrite, made_by="hir export") as staging:
        _write_model(source, staging, merge)
    return Path(output_dir)


def _write_model(source: Path, staging: Path, merge: bool) -> None:
    if (source / ADAPTER_WEIGHTS).is_file() and merge:
        from peft import AutoPeftModelForCausalLM, AutoPeftModelForSeq2SeqLM, PeftConfig
        from transformers import AutoConfig, AutoTokenizer

        base = PeftConfig.from_pretrained(source).base_model_name_or_path
        try:
            is_seq2seq = AutoConfig.from_pretrained(base).is_encoder_decoder
        except OSError as exc:
            raise HIRError(
                f"the adapter in {source} was trained on {base!r}, which cannot be loaded here; "
                "restore that model folder (or fetch it again) and export again"
            ) from exc
        auto = AutoPeftModelForSeq2SeqLM if is_seq2seq else AutoPeftModelForCausalLM
        model = auto.from_pretrained(source).merge_and_unload()
        model.save_pretrained(staging)
        AutoTokenizer.from_pretrained(source).save_pretrained(staging)
    else:
        ignore = shutil.ignore_patterns(
            TRAINING_STATE, VALUE_STATE, BUFFER, HISTORY, CHECKPOINT_MANIFEST, MARKER,
        )  # fmt: skip
        shutil.copytree(source, staging, ignore=ignore, dirs_exist_ok=True)
