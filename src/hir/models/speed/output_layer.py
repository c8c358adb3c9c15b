"""The output layer (last hidden states -> vocabulary logits) taken out of a model's forward pass,
so that the loss runs it itself, fused with what it reads of the logits
(`hir.losses.output_layer_statistics`).

Only a plain `nn.Linear` output layer qualifies, whose result the model returns unchanged or
scaled (a scale passes through: the layer is linear, so Cohere's logit scale is kept). A model
that caps its logits afterwards (Gemma 2's soft-capping), an output layer with a LoRA adapter or
one that accelerate offloads keeps the ordinary path. `fusable_output_layer` checks this once
per model on a short input.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import torch

# How far the model's logits may be from what its output layer returned (relative): rounding.
CHECK_TOLERANCE = 1e-5


def plain_output_layer(model: torch.nn.Module) -> torch.nn.Linear | None:
    """The model's output layer if it is a plain, local `nn.Linear`; None otherwise."""
    get = getattr(model, "get_output_embeddings", None)
    layer = get() if callable(get) else None
    if type(layer) is not torch.nn.Linear or layer.weight.device.type == "meta":
        return None
    if hasattr(layer, "_hf_hook"):  # accelerate moves its weights around each call
        return None
    return layer


@contextmanager
def output_layer_skipped(
    model: torch.nn.Module, layer: torch.nn.Linear, stand_in: torch.nn.Module | None = None
) -> Iterator[None]:
    """Within: `model(...).logits` are the hidden states the output layer would have read
    (or what `stand_in` makes of them)."""
    name = next(name for name, module in model.named_modules() if module is layer)
    parent_name, _, attribute = name.rpartition(".")
    parent = model.get_submodule(parent_name)
    setattr(parent, attribute, stand_in if stand_in is not None else torch.nn.Identity())
    try:
        yield
    finally:
        setattr(parent, attribute, layer)


class _KnownLogits(torch.nn.Module):
    """Stands in for the output layer with logits spread wide (where a soft-cap would bend
    them), the same at every position."""

    def __init__(self, vocabulary: int, dtype: torch.dtype, device: torch.device) -> None:
        super().__init__()
        self.logits = torch.linspace(-60.0, 60.0, vocabulary, dtype=dtype, device=device)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(*hidden.shape[:-1], -1)


def fusable_output_layer(model: torch.nn.Module) -> torch.nn.Linear | None:
    """`plain_output_layer(model)` if the model returns what that layer computes, unchanged or
    (for a layer without bias) scaled: checked once, on a short input, by standing in for the
    layer with known logits. None otherwise."""
    layer = plain_output_layer(model)
    if layer is None:
        return None
    ids = torch.zeros(1, 4, dtype=torch.long, device=layer.weight.device)
    inputs = {"input_ids": ids}
    if getattr(getattr(model, "config", None), "is_encoder_decoder", False):
        inputs["decoder_input_ids"] = ids
    known = _KnownLogits(layer.out_features, layer.weight.dtype, layer.weight.device)
    training = model.training
    try:
        model.eval()
        with torch.no_grad(), output_layer_skipped(model, layer, known):
            returned = model(**inputs).logits.float()
    except Exception:  # an architecture that does not call its output layer as a module
        return None
    finally:
        model.train(training)
    if returned.shape[-1] != layer.out_features:
        return None
    expected = known.logits.float().expand_as(returned)
    scale = (returned * expected).sum() / (expected * expected).sum()
    if layer.bias is not None and abs(scale.item() - 1.0) > CHECK_TOLERANCE:
        return None  # a scale does not pass through a bias
    difference = (returned - scale * expected).abs().max() / expected.abs().max()
    return layer if difference.item() <= CHECK_TOLERANCE else None


class FusedOutputLayers:
    """Which models' output layers the loss may run itself, checked once per model (and again
    when its output layer is replaced)."""

    def __init__(self) -> None:
        # model -> (its output layer, that layer if the loss may run it itself, else None)
        self._checked: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def for_model(self, model: torch.nn.Module) -> torch.nn.Linear | None:
        """`model`'s output layer where the loss may run it, fused with the statistics."""
        layer = plain_output_layer(model)
        if layer is None:
            return None
        checked = self._checked.get(model)
        if checked is None or checked[0] is not layer:  # unseen, or its layer was replaced
            checked = self._checked[model] = (layer, fusable_output_layer(model))
        return checked[1]
