"""`hir export RUN`: a run's trained model as a folder other tools load.

A run (or one of its checkpoints) that trained all weights is already an ordinary model folder;
a LoRA run's checkpoint holds the adapter only. `merge=True` folds the adapter into the base
model's weights (the base is the one named in the adapter's config), giving a plain
transformers folder; without it the adapter is written as peft saves it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from hir.errors import HIRError
from hir.models.adapters import ADAPTER_WEIGHTS
from hir.runs.checkpoint import latest_checkpoint


def checkpoint_of(run_or_checkpoint: str | Path) -> Path:
    """The checkpoint folder a path names: itself, or a run folder's newest checkpoint."""
    path = Path(run_or_checkpoint)
    if (path / "COMPLETE.json").is_file():
        return path
    found = latest_checkpoint(path / "checkpoints")
    if found is None:
        raise HIRError(
            f"{path} is neither a run folder with checkpoints nor a checkpoint: give the "
            "--output_dir of a `hir train` run or one of its checkpoints/iteration-NNNN folders"
        )
    return found


def export_model(run_or_checkpoint: str | Path, output_dir: str | Path, merge: bool) -> Path:
    source = checkpoint_of(run_or_checkpoint)
    output_dir = Path(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()):
        raise HIRError(f"{output_dir} is not empty; choose a new --output_dir")
    staging = output_dir.with_name(f".{output_dir.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
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
            "training_state.pt", "value_state.pt", "buffer.jsonl", "history.jsonl",
            "COMPLETE.json",
        )  # fmt: skip
        shutil.copytree(source, staging, ignore=ignore)
    if output_dir.exists():
        output_dir.rmdir()
    staging.rename(output_dir)
    return output_dir
