"""One scalar per output position from a copy of the policy's network: PPO's value model reads
every position, InstructGPT's reward model the last output token. The model kind (where the
output positions are) stays inside `Policy.output_hidden_states`."""

from __future__ import annotations

import copy

import torch
from torch import nn

from hir.losses import IGNORE_INDEX
from hir.models import EncodedBatch, Policy


class ScalarHeadModel(nn.Module):
    def __init__(self, policy: Policy, zero_init: bool = False, copy_body: bool = True,
                 share_frozen_layers: bool = False) -> None:  # fmt: skip
        """`copy_body=False` takes the policy's network itself (a loaded reward model's).
        `share_frozen_layers`: the copied body's frozen lower layers, the policy's as long as
        both stay frozen, read the policy's kept activations (`Policy.share_frozen_layers`)."""
        super().__init__()
        self.policy = policy  # for encoding and the model kind; its weights are not ours
        self.body = copy.deepcopy(policy.model) if copy_body else policy.model
        self.frozen_twin = None  # held here: the policy holds it only while the copy lives
        if share_frozen_layers and copy_body:
            self.frozen_twin = policy.share_frozen_layers(self.body)
        self.head = nn.Linear(policy.hidden_size, 1)
        if zero_init:  # a value model that starts at V = 0 does not bias the first advantages
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    # What accelerate's FSDP2 preparation asks a transformers model for: it moves the model to
    # the meta device and back, which unties tied weights (GPT-2's embedding and output layer)
    # unless the model re-ties them, and it puts the tied pair in one shard unit. Without
    # these, the body's embedding was left out of the optimizer under FSDP2 and never trained.
    def tie_weights(self) -> None:
        self.body.tie_weights()

    def get_input_embeddings(self) -> nn.Module:
        return self.body.get_input_embeddings()

    def get_output_embeddings(self) -> nn.Module | None:
        return self.body.get_output_embeddings()

    def forward(self, batch: EncodedBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Scalars [B, T] and labels [B, T] in the layout of `Policy.output_logits`."""
        hidden, labels = self.policy.output_hidden_states(batch, self.body)
        # A copy, not a view: FSDP2 warns of views among a sharded module's outputs.
        return self.head(hidden).squeeze(-1).clone(), labels


def last_output_scalars(values: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """[B]: the scalar at each row's last output token (its EOS), having read the rest (what a
    reward model reads), from `ScalarHeadModel`'s (scalars, labels)."""
    last = (labels != IGNORE_INDEX).long().cumsum(-1).argmax(-1)
    return values[torch.arange(len(last), device=values.device), last]
