"""Sharded models (FSDP2 or DeepSpeed ZeRO-3, set up by accelerate: `accelerate launch
--config_file configs/accelerate/fsdp2.yaml` or `zero3.yaml`) and the few things hir needs around
them. Each process holds a shard of every weight; a forward pass gathers the weights it needs from
all processes, one collective per sharded block. That suits training (every process runs the same
steps) and nothing else. Each function below takes the prepared model (ZeRO-3: accelerate's
DeepSpeed engine):

- `full_weights(model)`: a context in which the model holds its whole weights, so that each
  process can generate on its own share of the queries. Without it generation would hang: the
  processes generate different numbers of tokens, so they would make different numbers of
  collective calls. Sampling, evaluation and PPO's rollout scoring run inside it.
- `full_state_dict` / `load_state`: consolidated weights (the main process writes them), so a
  checkpoint written by a sharded run loads into one process and the other way round.
- `full_optimizer_state` / `load_optimizer_state`: the optimizer's whole state, in the format
  one process writes (by position), with or without sharding.

A model that is not sharded (one process, DDP) passes through every function unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import FSDPModule


def sharded_blocks(model: nn.Module) -> list[FSDPModule]:
    """The FSDP2 units of `model` (empty when it is not sharded)."""
    return [module for module in model.modules() if isinstance(module, FSDPModule)]


def is_sharded(model: nn.Module) -> bool:
    """Whether `model` (or a module inside it) is sharded by FSDP2 or partitioned by ZeRO-3."""
    return any(isinstance(module, FSDPModule) for module in model.modules()) or is_zero3(model)


def is_zero3(model: nn.Module) -> bool:
    """Whether `model` (a DeepSpeed engine, or the module inside one) is partitioned by ZeRO-3."""
    return any(hasattr(parameter, "ds_id") for parameter in model.parameters())


def is_main_process() -> bool:
    """Whether this is the process that writes (rank 0, or the only one)."""
    return not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0


@contextlib.contextmanager
def full_weights(model: nn.Module) -> Iterator[None]:
    """Within: every FSDP2 unit of `model` (or every ZeRO-3 partition) holds its whole weights,
    gathered once on entry (collective calls on every process), and forward passes gather
    nothing. On exit the shards are back and training goes on as before. The gathered weights
    cost one full copy of the model per process, as DDP holds all along."""
    if is_zero3(model):
        # DeepSpeed's own: gather every weight once, and take ZeRO-3's hooks off meanwhile.
        from deepspeed.runtime.zero.stage3 import unwrap_model_for_generation

        with unwrap_model_for_generation(model):
            yield
        return
    blocks = sharded_blocks(model)
    if not blocks:
        yield
        return
    root = blocks[0] if isinstance(model, FSDPModule) else None
    if root is not None:
        # The root's forward initialises FSDP's state; do it before gathering by hand.
        root._get_fsdp_state()._lazy_init()
    # Remember each unit's setting: the root keeps its weights after forward, the others not.
    settings = [all(group.post_forward_mesh_info is not None
                    for group in block._get_fsdp_state()._fsdp_param_groups)
                for block in blocks]  # fmt: skip
    for block in blocks:
        block.set_reshard_after_forward(False, recurse=False)
        block.unshard()
    try:
        yield
    finally:
        for block, reshard_after_forward in zip(blocks, settings):
            block.reshard()
            block.set_reshard_after_forward(reshard_after_forward, recurse=False)


def share_tied_embeddings(model: nn.Module) -> None:
    """Where embedding modules hold one tied weight (T5's shared embedding, read by its encoder
    and decoder through modules of their own), make them one module. FSDP2 needs each weight
    in one shard group; accelerate (1.15) gives the input embedding a group of its own, and the
    other modules' copy of the weight would be left to the root's group. Before sharding."""
    first: dict[int, nn.Embedding] = {}
    for name, module in list(model.named_modules(remove_duplicate=False)):
        if not isinstance(module, nn.Embedding):
            continue
        owner = first.setdefault(id(module.weight), module)
        if owner is not module:
            parent, _, attribute = name.rpartition(".")
            setattr(model.get_submodule(parent), attribute, owner)


_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's whole weights by name, on the CPU, without the second name of a tied weight
    (GPT-2's output embedding), as `save_pretrained` writes them. Sharded: a collective call
    (every process must make it) whose result only the main process gets ({} on the others)."""
    if not is_sharded(model):
        return model.state_dict()
    if is_zero3(model):
        return _zero3_state_dict(model)
    state = get_model_state_dict(model, options=_FULL)
    aliases = tied_aliases(model)
    return {name: tensor for name, tensor in state.items() if name not in aliases}


def trained_names(model: nn.Module) -> set[str]:
    """The names of the weights `model` trains (requires_grad), as `full_state_dict` names them."""
    return {name for name, parameter in model.named_parameters() if parameter.requires_grad}


def tied_aliases(model: nn.Module) -> dict[str, str]:
    """{second name of a tied weight: its first name}."""
    first: dict[int, str] = {}
    aliases = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        if id(parameter) in first:
            aliases[name] = first[id(parameter)]
        else:
            first[id(parameter)] = name
    return aliases


def load_state(model: nn.Module, state: dict[str, torch.Tensor]) -> tuple[list[str], list[str]]:
    """Load whole weights (some or all of the model's) into `model`, sharded or not, on every
    process. Returns the names it did not fill (a tied weight counts as filled when its other
    name was) and the names it does not have, as `load_state_dict(strict=False)` does."""
    names = list(model.state_dict())
    unexpected = [name for name in state if name not in names]
    if is_zero3(model):
        _zero3_load(model, state)
    elif is_sharded(model):
        known = {name: tensor for name, tensor in state.items() if name in names}
        set_model_state_dict(model, known, options=StateDictOptions(full_state_dict=True, strict=False))  # fmt: skip
    else:
        model.load_state_dict(state, strict=False)
    aliases = tied_aliases(model)
    return [
        name for name in names if name not in state and aliases.get(name) not in state
    ], unexpected


@contextlib.contextmanager
def loads_into_shards(model: nn.Module) -> Iterator[None]:
    """Within: `model.load_state_dict(state, strict=False)` with whole tensors loads them into a
    sharded model too (through `load_state`), for a library that loads that way (peft's adapter
    loading)."""
    if not is_sharded(model):
        yield
        return

    def load_state_dict(state, strict=True, assign=False):
        missing, unexpected = load_state(model, state)
        return nn.modules.module._IncompatibleKeys(missing, unexpected)

    model.load_state_dict = load_state_dict
    try:
        yield
    finally:
        del model.load_state_dict


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """The whole model's `optimizer.state_dict()`, in the format one process writes (keyed by
    position in the optimizer's parameter list; a sharded model's parameters keep their order).
    Sharded: a collective call, the result on the main process only ({} on the others)."""
    if is_zero3(model):
        return _zero3_optimizer_state(model, optimizer)
    if not is_sharded(model) or not optimizer.state:
        # (No state yet: torch's gathering would first take an optimizer step to make one.)
        return optimizer.state_dict()
    by_name = get_optimizer_state_dict(model, optimizer, options=_FULL)
    if not by_name.get("param_groups"):
        return {}
    order = [name for group in by_name["param_groups"] for name in group["params"]]
    position = {name: index for index, name in enumerate(order)}
    return {
        "state": {position[name]: state for name, state in by_name["state"].items()},
        "param_groups": [{**group, "params": [position[name] for name in group["params"]]}
                         for group in by_name["param_groups"]],
    }  # fmt: skip


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load what `full_optimizer_state` returned into `optimizer`, on every process."""
    if is_zero3(model):
        _zero3_load_optimizer_state(model, optimizer, state)
        return
    if not is_sharded(model) or not state["state"]:
        optimizer.load_state_dict(state)
        return
    name_of = {id(parameter): name for name, parameter in model.named_parameters()}
    order = [name_of[id(p)] for group in optimizer.param_groups for p in group["params"]]
    by_name = {
        "state": {order[index]: value for index, value in state["state"].items()},
        "param_groups": [{**group, "params": [order[index] for index in group["params"]]}
                         for group in state["param_groups"]],
    }  # fmt: skip
    set_optimizer_state_dict(
        model, optimizer, by_name, options=StateDictOptions(full_state_dict=True)
    )


# -- DeepSpeed ZeRO-3: the engine keeps fp32 master weights and the optimizer's state in
# partitions of its own; `deepspeed.utils`' safe_get/set functions gather and scatter them
# per parameter (collective calls).


def _zero3_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    module = getattr(model, "module", model)  # the engine's module
    return list(module.named_parameters())


def _zero3_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Whole weights: the fp32 master copy of trained ones (what training goes on from), the
    gathered weight of frozen ones."""
    from deepspeed import zero
    from deepspeed.utils import safe_get_full_fp32_param

    state = {}
    for name, parameter in _zero3_parameters(model):
        full = safe_get_full_fp32_param(parameter) if parameter.requires_grad else None
        if full is None:
            with zero.GatheredParameters([parameter]):
                full = parameter.data.detach().clone()
        if is_main_process():
            state[name] = full.reshape(parameter.ds_shape).cpu()
    return state


def _zero3_load(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Whole weights into the partitions: the module's and, for trained weights, the fp32 master
    copy the optimizer steps (loading the module's alone would be undone by the next step)."""
    from deepspeed import zero
    from deepspeed.utils import safe_set_full_fp32_param

    for name, parameter in _zero3_parameters(model):
        if name not in state:
            continue
        value = state[name]
        with zero.GatheredParameters([parameter], modifier_rank=0):
            if is_main_process():
                parameter.data.copy_(value.to(parameter.device, parameter.dtype))
        if parameter.requires_grad:
            safe_set_full_fp32_param(parameter, value.to(parameter.device, torch.float32))


def _zero3_trained(model: nn.Module) -> list[nn.Parameter]:
    return [p for _, p in _zero3_parameters(model) if p.requires_grad]


def _zero3_inner_states(optimizer) -> list[dict]:
    """The per-group states of the torch optimizer inside DeepSpeed's (one per flat partition)."""
    return list(getattr(optimizer, "optimizer", optimizer).state.values())


def _zero3_optimizer_state(model: nn.Module, optimizer) -> dict:
    """The whole optimizer state in one process's format: by position among the trained
    parameters (the order hir's optimizer was built in), the torch optimizer's hyperparameters."""
    from deepspeed.utils import safe_get_full_optimizer_state

    inner = getattr(optimizer, "optimizer", optimizer)
    hyper = {k: v for k, v in inner.param_groups[0].items() if k != "params"}
    trained = _zero3_trained(model)
    groups = [{**hyper, "params": list(range(len(trained)))}]
    steps = [s["step"] for s in _zero3_inner_states(optimizer) if "step" in s]
    if not steps:
        return {"state": {}, "param_groups": groups}
    state = {}
    for index, parameter in enumerate(trained):
        entry = {"step": torch.as_tensor(steps[0], dtype=torch.float32).clone()}
        for key in ("exp_avg", "exp_avg_sq"):
            full = safe_get_full_optimizer_state(parameter, key)
            if is_main_process():
                entry[key] = full.reshape(parameter.ds_shape).cpu()
        state[index] = entry
    return {"state": state, "param_groups": groups} if is_main_process() else {}


def _zero3_load_optimizer_state(model: nn.Module, optimizer, state: dict) -> None:
    from deepspeed.utils import safe_set_full_optimizer_state

    if not state["state"]:
        return
    trained = _zero3_trained(model)
    for index, parameter in enumerate(trained):
        for key in ("exp_avg", "exp_avg_sq"):
            value = state["state"][index][key].to(parameter.device, torch.float32)
            safe_set_full_optimizer_state(parameter, value, key)
    step = state["state"][0]["step"]
    for inner_state in _zero3_inner_states(optimizer):
        previous = inner_state.get("step")
        inner_state["step"] = (
            step.to(previous.device, previous.dtype).clone()
            if isinstance(previous, torch.Tensor) else int(step)
        )  # fmt: skip
