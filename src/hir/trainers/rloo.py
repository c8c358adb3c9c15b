"""RLOO as TRL 1.16 defines it (docs/method.md section 3, "GRPO and RLOO"; Ahmadian et al.
2024), on the same online loop as HIR, for both model kinds. A sibling of GRPO on
`GroupTrainer`: no value model; with `beta` > 0 (TRL's default 0.05), the start as reference.

    r_i' = r_i - beta sum_t (log pi_old(o_t) - log pi_ref(o_t))        the KL in the reward
    A_i  = r_i' - mean_{j != i} r_j'                                  the leave-one-out baseline
    loss = mean_i -min(rho_i A_i, clip(rho_i, 1 - eps, 1 + eps_high) A_i),
           rho_i = exp(sum_t log pi(o_t) - sum_t log pi_old(o_t))     the sequence-level ratio

The maths: `hir.losses.grpo`, checked against TRL's own trainer.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from accelerate.utils import gather_object

from hir.losses.grpo import clipped_sequence_loss, leave_one_out_advantages, rewards_with_kl_penalty
from hir.online.sampling import Sample
from hir.options import flag_help
from hir.trainers.groups import ClippingFields, GroupConfig, GroupTrainer


@dataclass
class RLOOConfig(ClippingFields, GroupConfig):
    """RLOO with TRL 1.16's definitions and defaults: groups of `num_samples` completions per
    query (TRL's num_generations, 2), the first-order KL to the start in the reward (beta
    0.05), the leave-one-out baseline, clipping 0.2 on the sequence-level ratio."""

    num_samples: int = field(default=2, metadata=flag_help("completions per query: a group (TRL's num_generations, 2)"))  # fmt: skip
    beta: float = field(default=0.05, metadata=flag_help("weight of the summed log-ratio to the start, taken from the reward (TRL: 0.05)"))  # fmt: skip
    normalize_advantages: bool = field(default=False, metadata=flag_help("standardize the advantages over the batch"))  # fmt: skip


class RLOOTrainer(GroupTrainer):
    method = "rloo"
    config_class = RLOOConfig

    def update(self, items: Sequence[Sample], iteration: int) -> dict:
        config = self.config
        if not items:
            return {"train_steps": 0}
        started = time.perf_counter()
        scored = self.scored_batches(items)
        scores = torch.tensor([s.score for s in items], dtype=torch.float)
        rewards, kl = scores.clone(), torch.zeros(len(items))
        penalized = []  # (row, reward less its KL) of the completions this process scored
        for item in scored:
            # Each completion's summed log-probability under the sampling policy: the ratio's base.
            item["old_sum"] = (item["old_logp"] * item["mask"]).sum(-1)
            if item["ref_logp"] is not None:
                values = rewards_with_kl_penalty(scores[item["rows"]], item["old_logp"].cpu(),
                                                 item["ref_logp"].cpu(), item["mask"].cpu(), config.beta)  # fmt: skip
                penalized += zip(item["rows"], values.tolist(), strict=True)
        if config.beta:
            # Every process needs every completion's reward: the baseline leaves one out of its group.
            if self.accelerator.num_processes > 1:
                penalized = gather_object(penalized)
            rows, values = zip(*penalized, strict=True)
            rewards[list(rows)] = torch.tensor(values)
            kl = (scores - rewards) / config.beta
        advantages = leave_one_out_advantages(
            rewards, config.num_samples, config.normalize_advantages
        )
        for item in scored:
            item["advantages"] = advantages[item["rows"]].to(item["old_logp"].device)
        metrics = self.train_passes(scored, self._step)
        metrics.update({
            "reward": float(scores.mean()),
            "kl": float(kl.mean()),  # each completion's summed first-order log-ratio to the start
            "train_examples_per_second": self.throughput(items, started),
        })  # fmt: skip
        return metrics

    def _step(self, item: dict) -> dict[str, float]:
        config = self.config

        def compute_loss():
            logp, _ = self._logprobs(self.policy, item["batch"], self.model)
            loss = clipped_sequence_loss(
                logp, item["old_sum"], item["advantages"], item["mask"], epsilon_low=config.epsilon,
                epsilon_high=config.clip_high,
            )  # fmt: skip
            return self.data_parallel(loss, item, "rows"), {}

        return self.optimize(compute_loss)
