"""What of a model is trained: all weights, only the last k transformer layers, or a LoRA
adapter (through peft), optionally on the last k layers only.

    policy = load_policy("smollm2-135m-instruct")
    policy.set_training_scope(TrainingScope(lora_r=8, train_last_layers=4))

With LoRA the policy's model becomes a `peft.PeftModel`: checkpoints hold the adapter only,
`Policy.load_weights` loads one back, `reference_context` runs the base model with the
adapter switched off (no second copy), and `merged_model` folds the adapter into ordinary weights.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from hir.errors import HIRError
from hir.models.speed.sharding import is_sharded, loads_into_shards

ADAPTER_WEIGHTS = "adapter_model.safetensors"


@dataclass(frozen=True)
class TrainingScope:
    lora_r: int = 0  # 0: no adapter, the weights themselves are trained
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_target_modules: str = "all-linear"
    train_last_layers: int = 0  # 0: every layer
    # Keep the frozen layers' activations (decoder-only, last-k training); 0 turns it off.
    activation_cache_mb: int = 2048

    def __post_init__(self) -> None:
        if self.lora_r < 0 or self.train_last_layers < 0 or self.activation_cache_mb < 0:
            raise HIRError("--lora_r, --train_last_layers and --activation_cache_mb must be >= 0 (0 turns them off)")  # fmt: skip
        if not 0.0 <= self.lora_dropout < 1.0:
            raise HIRError(f"--lora_dropout must be in [0, 1), got {self.lora_dropout}")

    @property
    def is_full(self) -> bool:
        return self.lora_r == 0 and self.train_last_layers == 0


def transformer_layers(model: torch.nn.Module) -> tuple[str, torch.nn.ModuleList]:
    """The (name, list) of the model's repeated transformer blocks: the longest ModuleList
    (Llama/Qwen `model.layers`, GPT-2 `transformer.h`; for T5 the decoder's `block`)."""
    lists = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.ModuleList)]
    if not lists:
        raise HIRError(f"found no transformer layers in {type(model).__name__}")
    # The decoder's blocks for encoder-decoder models: they are what generates the output.
    decoder = [(n, m) for n, m in lists if "decoder" in n]
    return max(decoder or lists, key=lambda item: len(item[1]))


def apply_training_scope(model, scope: TrainingScope, is_encoder_decoder: bool):
    """`model` frozen, or wrapped in a LoRA adapter, as `scope` says (in place); returns the
    model to train (a `PeftModel` with LoRA) and, when only the top layers of a decoder-only
    model train, the cache of the frozen layers' activations (else None).
    `Policy.set_training_scope` is the caller."""
    if scope.is_full:
        return model, None
    name, layers = transformer_layers(model)
    k = scope.train_last_layers
    if k > len(layers):
        raise HIRError(f"--train_last_layers {k} exceeds the model's {len(layers)} layers")
    trained = list(range(len(layers) - k, len(layers))) if k else list(range(len(layers)))
    if scope.lora_r:
        model = _with_lora(model, scope, trained, name.rsplit(".", 1)[-1])
    else:
        model.requires_grad_(False)
        for index in trained:
            layers[index].requires_grad_(True)
        # The final norm reads the last layer's output; train it with the top layers.
        for module_name, module in model.named_modules():
            is_final_norm = module_name.endswith(("norm", "ln_f", "final_layer_norm"))
            if is_final_norm and not module_name.startswith(name):
                module.requires_grad_(True)
    frozen_cache = None
    if k and k < len(layers) and scope.activation_cache_mb and not is_encoder_decoder:
        from hir.models.speed.frozen_layers import FrozenLayerCache

        # (peft wraps the model in place: `layers` are still its blocks.)
        frozen_cache = FrozenLayerCache(model, layers, len(layers) - k, scope.activation_cache_mb)
    return model, frozen_cache


def _with_lora(model, scope: TrainingScope, layer_indices: list[int], layers_pattern: str):
    from peft import LoraConfig, TaskType, get_peft_model

    targets = scope.lora_target_modules
    if targets == "all-linear" and scope.train_last_layers:
        # peft cannot combine "all-linear" with a layer subset: name the layers' linears.
        target_modules = linear_layer_names(transformer_layers(model)[1])
    elif targets == "all-linear":
        target_modules = targets
    else:
        target_modules = [t.strip() for t in targets.split(",")]
    config = LoraConfig(
        r=scope.lora_r,
        lora_alpha=scope.lora_alpha,
        lora_dropout=scope.lora_dropout,
        target_modules=target_modules,
        task_type=TaskType.SEQ_2_SEQ_LM if model.config.is_encoder_decoder else TaskType.CAUSAL_LM,
        layers_to_transform=layer_indices if scope.train_last_layers else None,
        layers_pattern=layers_pattern if scope.train_last_layers else None,
    )
    try:
        # peft reads transformers' deprecated is_gradient_checkpointing alias; not ours to fix.
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning
            )
            return get_peft_model(model, config)  # (LoraConfig's own checks raise above: peft bugs)
    except ValueError as exc:
        raise HIRError(
            f"--lora_target_modules {targets!r} matches no layer of this model "
            f"({str(exc).splitlines()[0][:120]}); its linear layers are named: "
            f"{', '.join(linear_layer_names(model))}"
        ) from exc


def initialize_adapter(model) -> None:
    """Draw a LoRA adapter's initial weights (A random, B zero) from the global torch RNG, as
    peft does when it wraps the model: called after the run's seed is set, so that the seed
    decides them. Nothing happens to a model without an adapter."""
    if not is_adapted(model):
        return
    for module in model.modules():
        if hasattr(module, "reset_lora_parameters") and hasattr(module, "lora_A"):
            for name in module.lora_A:
                module.reset_lora_parameters(name, model.peft_config[name].init_lora_weights)


def linear_layer_names(module: torch.nn.Module) -> list[str]:
    """The distinct last names of the linear layers under `module` (GPT-2's are Conv1D)."""
    return sorted({name.rsplit(".", 1)[-1] for name, m in module.named_modules()
                   if type(m).__name__ in ("Linear", "Conv1D")})  # fmt: skip


def is_adapted(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "disable_adapter")


def load_adapter_weights(model, folder: Path) -> None:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    path = folder / ADAPTER_WEIGHTS
    if not path.is_file():
        raise HIRError(f"{folder} holds no {ADAPTER_WEIGHTS}: it was not written by a LoRA run")
    state = load_file(
        path, device="cpu" if is_sharded(model) else str(next(model.parameters()).device)
    )
    with loads_into_shards(model):
        result = set_peft_model_state_dict(model, state)
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise HIRError(
            f"the adapter in {folder} does not fit this model (unexpected {unexpected[:3]}): "
            "resume with the model and LoRA settings the run started from"
        )


def reference_context(model):
    """A context in which `model` computes as the model the run started from: for a LoRA model
    its base with the adapter switched off; otherwise (a frozen copy is used) nothing."""
    return model.disable_adapter() if is_adapted(model) else contextlib.nullcontext()


def merged_model(model):
    """An ordinary transformers model: the adapter folded into the weights (a copy's)."""
    import copy

    return copy.deepcopy(model).merge_and_unload() if is_adapted(model) else model
