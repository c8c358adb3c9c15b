"""Models: loading (`loading`: Hub id, folder, built-in name, GGUF via `sources`), the policy
(`prompts`: the text side; `policy`: the model side, with `seq2seq` and `causal` the two
kinds), what is trained (`adapters`: LoRA, last-k layers), heads on a copy of the network
(`scalar_head`), reward models (`reward_model`), small models built offline (`small_models`),
and `speed/`: what only makes the policy faster (frozen-layer cache, KV cache, fused output
layer) or lets it run sharded."""

from hir.models.loading import as_policy, describe_model, load_policy, wrap_policy
from hir.models.policy import EncodedBatch, Policy

__all__ = ["EncodedBatch", "Policy", "as_policy", "describe_model", "load_policy", "wrap_policy"]
