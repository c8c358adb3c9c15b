"""The public HIR code's loops, rewritten only as far as needed to run on any `Policy`: kept as
the baseline that benchmarks measure `hir` against, and that equivalence tests compare with.

- `reference_sample`: one query per `generate` call with `num_return_sequences=n`, then a set
  to drop duplicates (online_sampler.py).
- `reference_hir_step`: one example per step and three forward passes, one of them a duplicate:
  the relabeled instruction for the smoothed CE, the same again for the contrastive score, and
  the opposite instruction (offline_trainer.py).
"""

from __future__ import annotations

import torch

from hir.losses import label_smoothed_nll, mean_entropy, pairwise_contrastive_loss, sequence_scores
from hir.models import Policy


@torch.no_grad()
def reference_sample(
    policy: Policy,
    prompts: list[str],
    num_samples: int,
    max_new_tokens: int,
    temperature: float = 1.0,
) -> list[list[str]]:
    policy.model.eval()
    results = []
    for prompt in prompts:
        inputs = policy._pad_prompts(policy.prompt_ids([prompt]))
        inputs = {k: v.to(policy.device) for k, v in inputs.items()}
        generated = policy.model.generate(
            **inputs,
            do_sample=True,
            temperature=temperature,
            top_k=0,
            top_p=1.0,
            num_return_sequences=num_samples,
            max_new_tokens=max_new_tokens,
            pad_token_id=policy.tokenizer.pad_token_id,
            eos_token_id=policy.tokenizer.eos_token_id,
        )
        texts = policy.decode(policy._new_tokens(generated, inputs))
        results.append(list(set(texts)))
    return results


def reference_hir_step(
    policy: Policy,
    optimizer: torch.optim.Optimizer,
    prompt: str,
    opposite_prompt: str,
    output: str,
    label_smoothing: float = 0.2,
    contrastive_smoothing: float = 0.2,
    entropy_weight: float = 0.001,
) -> float:
    """One optimizer step on one relabeled example, as the public trainer does it."""
    device = policy.device
    relabeled = policy.encode([prompt], [output]).to(device)
    logits, labels = _all_position_logits(policy, relabeled)
    loss = label_smoothed_nll(logits, labels, label_smoothing)
    positive_logits, positive_labels = _all_position_logits(policy, relabeled)  # the duplicate pass
    negative_logits, negative_labels = _all_position_logits(
        policy, policy.encode([opposite_prompt], [output]).to(device)
    )
    contrastive = pairwise_contrastive_loss(
        sequence_scores(positive_logits, positive_labels),
        sequence_scores(negative_logits, negative_labels),
        contrastive_smoothing,
    )
    loss = loss + contrastive - entropy_weight * mean_entropy(logits, labels)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return loss.item()


def _all_position_logits(policy: Policy, batch):
    """Logits at every position, as `model(input_ids, labels=...)` computes them."""
    logits = policy.model(**batch.inputs).logits
    if policy.is_encoder_decoder:
        return logits, batch.labels
    return logits[:, :-1], batch.labels[:, 1:]
