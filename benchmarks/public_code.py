"""The public HIR code's loops, rewritten only as far as needed to run on any `Policy`: kept as
the baseline that benchmarks measure `hir` against, and that equivalence tests compare with.
(Not to be confused with PPO's reference policy, which is a frozen model.)

- `public_code_sample`: one query per `generate` call with `num_return_sequences=n`, then a set
  to drop duplicates (online_sampler.py).
- `public_code_hir_step`: one example per step and three forward passes, one of them a duplicate:
  the relabeled instruction for the smoothed CE, the same again for the contrastive score, and
  the opposite instruction (offline_trainer.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hir.models import Policy


@torch.no_grad()
def public_code_sample(
    policy: Policy,
    prompts: list[str],
    num_samples: int,
    max_new_tokens: int,
    temperature: float = 1.0,
) -> list[list[str]]:
    policy.model.eval()
    results = []
    for prompt in prompts:
        inputs = policy.pad_prompts(policy.format.prompt_ids([prompt]))
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
        texts = policy.format.decode(policy.new_tokens(generated, inputs))
        results.append(list(set(texts)))
    return results


def public_code_hir_step(
    policy: Policy,
    optimizer: torch.optim.Optimizer,
    prompt: str,
    opposite_prompt: str,
    output: str,
    label_smoothing: float = 0.2,
    contrastive_smoothing: float = 0.2,
    entropy_weight: float = 0.001,
) -> float:
    """One optimizer step on one relabeled example, as the public trainer does it, with its
    formulas written out here (not `hir.losses`, which the equivalence tests check against this):
    transformers' LabelSmoother CE (= torch's cross_entropy with label_smoothing), the mean token
    log-probability as the sequence score, and the eps-smoothed pairwise logistic loss."""
    device = policy.device
    relabeled = policy.encode([prompt], [output]).to(device)
    logits, labels = policy.all_position_logits(relabeled)
    ce = F.cross_entropy(
        logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100,
        label_smoothing=label_smoothing,
    )  # fmt: skip
    positive_logits, positive_labels = policy.all_position_logits(relabeled)  # the duplicate pass
    negative_logits, negative_labels = policy.all_position_logits(
        policy.encode([opposite_prompt], [output]).to(device)
    )
    margin = _mean_token_logprob(positive_logits, positive_labels) - _mean_token_logprob(
        negative_logits, negative_labels
    )
    contrastive = -(1 - contrastive_smoothing) * F.logsigmoid(margin) - (
        contrastive_smoothing * F.logsigmoid(-margin)
    )
    keep = labels != -100
    probabilities = torch.softmax(logits.float(), -1)[keep]
    entropy = -(probabilities * torch.log(probabilities)).sum(-1).mean()
    loss = ce + contrastive.mean() - entropy_weight * entropy
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return loss.item()


def _mean_token_logprob(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    keep = labels != -100
    logp = torch.log_softmax(logits.float(), -1)[keep]
    return logp.gather(-1, labels[keep].unsqueeze(-1)).mean()
