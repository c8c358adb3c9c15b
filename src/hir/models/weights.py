"""Whole weights from a folder into a model already built (a checkpoint's into the policy)."""

from __future__ import annotations

from pathlib import Path

from transformers import PreTrainedModel

from hir.errors import HIRError
from hir.models.speed.sharding import is_sharded, load_state


def load_weights_into(model: PreTrainedModel, folder: Path) -> None:
    """Load `model*.safetensors` (one file or shards) from `folder` into `model`. Weights that
    `save_pretrained` left out because they are tied to another (GPT-2's output embedding) are
    the same tensor as one that is loaded; any other missing weight is an error."""
    from safetensors.torch import load_file

    files = sorted(folder.glob("model*.safetensors"))
    if not files:
        from hir.models.adapters import ADAPTER_WEIGHTS

        if (folder / ADAPTER_WEIGHTS).is_file():
            raise HIRError(f"{folder} holds a LoRA adapter, not whole weights: load it into a model "
                           "built with the run's --lora_r (and --train_last_layers, --lora_target_modules)")  # fmt: skip
        raise HIRError(f"{folder} holds no model*.safetensors weights")
    # A sharded model's parameters are DTensors: read the whole weights onto the CPU.
    device = "cpu" if is_sharded(model) else str(next(model.parameters()).device)
    state = {}
    for file in files:
        state.update(load_file(file, device=device))
    missing, unexpected = load_state(model, state)
    if missing or unexpected:
        raise HIRError(
            f"the weights in {folder} do not fit this model (missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}): resume with the model the run started from"
        )
