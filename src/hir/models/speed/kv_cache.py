"""Passing a KV cache to a transformers model under the name its version uses.

transformers 5.x renamed `past_key_values` to `cache` (in `forward`, `generate` and the output),
warns on the old name and drops it in 5.40; the oldest transformers hir supports knows only the
old name. hir asks the model which one its `forward` takes."""

from __future__ import annotations

import inspect
from functools import cache as memoized

import torch


def cache_argument(model: torch.nn.Module) -> str:
    """The keyword `model`'s forward (and generate) takes a KV cache by: "cache" or
    "past_key_values". A peft wrapper passes keywords on, so its base model is asked."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return _argument_of(type(base))


@memoized
def _argument_of(model_class: type) -> str:
    parameters = inspect.signature(model_class.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def returned_cache(output):
    """The KV cache a forward pass with `use_cache=True` returned."""
    # `output.past_key_values` still works on new versions, with the deprecation warning.
    return output["cache"] if "cache" in output else output["past_key_values"]


def layer_tensors(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each layer's (keys, values) [batch, heads, positions, head size] of a DynamicCache."""
    if hasattr(cache, "layers"):  # transformers >= 4.56
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache))


def cache_of(tensors: list[tuple[torch.Tensor, torch.Tensor]]):
    """A DynamicCache holding each layer's (keys, values)."""
    from transformers import DynamicCache

    cache = DynamicCache()
    for index, (keys, values) in enumerate(tensors):
        cache.update(keys, values, index)
    return cache
