"""Models: loading (`loading`: Hub id, folder, built-in name, GGUF via `sources`), the policy
(`prompts`: the text side; `policy`: the model side, with `seq2seq` and `causal` the two
kinds), what is trained (`adapters`: LoRA, last-k layers; `frozen_layers`: their activations
kept), heads on a copy of the network (`scalar_head`) and small models built offline
(`small_models`)."""

from hir.models.loading import as_policy, describe_model, load_policy, wrap_policy
from hir.models.policy import EncodedBatch, Policy

__all__ = ["EncodedBatch", "Policy", "as_policy", "describe_model", "load_policy", "wrap_policy"]
