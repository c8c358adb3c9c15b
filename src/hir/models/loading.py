"""Loading a policy from what a user has: a Hub id, a local folder, a built-in name or a GGUF file
(`hir.models.sources`), or an already loaded model; and loading saved weights back into one."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    PreTrainedModel,
)
from transformers.utils import logging as hf_logging

from hir.errors import HIRError
from hir.models.causal import CausalPolicy
from hir.models.policy import Policy
from hir.models.seq2seq import Seq2SeqPolicy

# A model folder holds at least one of these when its tokenizer was saved with it.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "spiece.model",
                   "vocab.json", "vocab.txt")  # fmt: skip


def resolve_device(device: str | None = None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def wrap_policy(model: PreTrainedModel, tokenizer, **kwargs) -> Policy:
    """The right `Policy` for an already loaded model."""
    cls = Seq2SeqPolicy if model.config.is_encoder_decoder else CausalPolicy
    return cls(model, tokenizer, **kwargs)


def as_policy(
    model: str | os.PathLike | Policy | PreTrainedModel,
    tokenizer=None,
    device: str | None = None,
) -> Policy:
    """A `Policy` from what a user has: a Hub id or local folder (loaded), a `Policy` (used as
    it is) or a loaded `PreTrainedModel` with its `tokenizer`."""
    if isinstance(model, Policy):
        return model
    if isinstance(model, PreTrainedModel):
        if tokenizer is None:
            raise HIRError("a loaded model needs its tokenizer: pass tokenizer=...")
        if device not in (None, "auto"):
            model.to(resolve_device(device))
        return wrap_policy(model, tokenizer)
    if not str(model):
        raise HIRError("no model given: set --model to a Hub id or a local folder")
    return load_policy(model, device=device)


def describe_model(model: str | os.PathLike | Policy | PreTrainedModel) -> str:
    """What a run records as its model: the name or path it was given, else the loaded model's
    `name_or_path`."""
    if isinstance(model, Policy):
        if model.source:
            return model.source
        model = model.model
    if hasattr(model, "get_base_model"):  # a peft model
        model = model.get_base_model()
    if isinstance(model, PreTrainedModel):
        return str(getattr(model, "name_or_path", "") or type(model).__name__)
    return str(model)


def load_policy(
    name_or_path: str | os.PathLike,
    device: str | None = None,
    dtype: str | torch.dtype | None = None,
    prompt_format: str = "auto",
    allow_new_weights: bool = False,
    **kwargs,
) -> Policy:
    """Load a model and its tokenizer by Hub name, local folder, built-in name or GGUF file
    (`hir.models.sources`); picks the model class from the config (`is_encoder_decoder`).
    Weights the config needs but the folder lacks (or does not fit) are refused, unless
    `allow_new_weights` lets transformers initialise them afresh. `dtype` is e.g. "bfloat16"; default float32."""
    from hir.models.sources import resolve_model, suggest_builtin

    name = resolve_model(name_or_path)  # built-in names and GGUF files become a folder
    # Hub ids are "name" or "org/name"; anything else is meant as a folder on disk.
    looks_local = name.startswith((".", "/", "~")) or name.count("/") > 1
    if looks_local and not Path(name).expanduser().exists():
        raise HIRError(
            f"model path {name!r} does not exist; give a folder with config.json or a Hub model id"
        )
    folder = Path(name).expanduser()
    has_model = (folder / "config.json").is_file()
    if has_model and not any((folder / f).is_file() for f in TOKENIZER_FILES):
        raise HIRError(
            f"model folder {name!r} holds no tokenizer (none of {', '.join(TOKENIZER_FILES)}): "
            "save it next to the model with tokenizer.save_pretrained(folder)"
        )
    hf_logging.disable_progress_bar()
    try:
        config = AutoConfig.from_pretrained(name)
        tokenizer = AutoTokenizer.from_pretrained(name)
        model_class = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
        torch_dtype = getattr(torch, dtype) if isinstance(dtype, str) else (dtype or torch.float32)
        # Weights of another shape than the config's are loaded as new and reported in
        # `loading` (refused below in one line), not in transformers' own report and error.
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            model, loading = model_class.from_pretrained(
                name, dtype=torch_dtype, output_loading_info=True, ignore_mismatched_sizes=True
            )
        finally:
            hf_logging.set_verbosity(verbosity)
    except SafetensorError as exc:
        raise HIRError(
            f"the weights of model {name!r} cannot be read ({exc}): the file is damaged or was "
            "not copied whole; copy or save it again"
        ) from exc
    except (OSError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HIRError(
            f"cannot load model {name!r}: {first_line} (a local folder needs config.json, the "
            "weights and the tokenizer files; a Hub id needs the network or a filled cache)"
            + suggest_builtin(name)
        ) from exc
    refuse_unfit_weights(name, loading, allow_new_weights)
    model.to(resolve_device(device))
    return wrap_policy(
        model, tokenizer, prompt_format=prompt_format, source=str(name_or_path), **kwargs
    )


def refuse_unfit_weights(name: str, loading: dict, allow_new_weights: bool) -> None:
    """A folder whose weights do not fit its config (T5's config over GPT-2's weights, a cut
    shard) would run as a randomly initialised model: one line names what does not fit."""
    missing, unexpected = loading.get("missing_keys", []), loading.get("unexpected_keys", [])
    mismatched = [
        str(m[0]) if isinstance(m, tuple) else str(m) for m in loading.get("mismatched_keys", [])
    ]
    if allow_new_weights or not (missing or unexpected or mismatched):
        return
    parts = [f"{label} {len(keys)} ({', '.join(sorted(keys)[:3])}{', ...' if len(keys) > 3 else ''})"
             for label, keys in (("missing", missing), ("unexpected", unexpected),
                                 ("of another shape", mismatched)) if keys]  # fmt: skip
    raise HIRError(
        f"the weights of model {name!r} do not fit its config: {'; '.join(parts)}; fix the folder "
        "(config.json and the weights of one model), or pass --allow_new_weights to start "
        "those weights afresh"
    )
