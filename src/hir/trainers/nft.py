"""NFT, negative-aware fine-tuning (Chen et al. 2025; docs/method.md section 3, "NFT and NSR"),
on the same online loop as HIR, for both model kinds: supervised learning on every completion
of a query's group. A right one trains by maximum likelihood; a wrong one by maximum likelihood
of the implicit wrong-answer policy

    pi_neg = (pi_old - r_q pi_theta) / (1 - r_q),       r_q the query's share of right samples,

so lowering a wrong completion's likelihood under pi_neg's fit is what raises the right ones'
under pi_theta; no reward model, value network or policy gradient. On-policy its gradient is
GRPO's with unscaled advantages. Queries whose samples are all right or all wrong teach nothing
(the reference drops them). With `beta` > 0, GRPO's k3 KL to the start is added. The maths:
`hir.losses.negative.nft_token_loss`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from hir.losses.negative import nft_token_loss, right_shares
from hir.online.sampling import Sample
from hir.options import flag_help
from hir.trainers.groups import GroupConfig, GroupTrainer


@dataclass
class NFTConfig(GroupConfig):
    """NFT with the reference's settings (NVlabs/NFT, train_7B.sh): 16 completions per query,
    the implicit negative's argument clamped at 1.0 with its gradient kept, token-level ratios,
    no KL, one pass per batch."""

    num_samples: int = field(default=16, metadata=flag_help("completions per query (the reference: 16)"))  # fmt: skip
    clamp_negative: float = field(default=1.0, metadata=flag_help("lower bound on the implicit negative policy's ratio in the loss (gradient kept)"))  # fmt: skip

    def checks(self) -> list[tuple[bool, str]]:
        return super().checks() + [(self.clamp_negative > 0, "clamp_negative must be > 0")]


class NFTTrainer(GroupTrainer):
    method = "nft"
    config_class = NFTConfig
    needs_right_and_wrong = True

    def update(self, items: Sequence[Sample], iteration: int) -> dict:
        config = self.config
        if not items:
            return {"train_steps": 0}
        started = time.perf_counter()
        right = self.right(items)
        shares = right_shares(right, config.num_samples)
        scored = self.scored_batches(items)
        for item in scored:
            device = item["old_logp"].device
            item["right"], item["share"] = (
                right[item["rows"]].to(device),
                shares[item["rows"]].to(device),
            )
        metrics = self.train_passes(scored, self._step)
        metrics.update({
            "reward": float(right.mean()),
            "groups_without_spread": float(((shares == 0) | (shares == 1)).float().mean()),
            "train_examples_per_second": self.throughput(items, started),
        })  # fmt: skip
        return metrics

    def _step(self, item: dict) -> dict[str, float]:
        config = self.config

        def compute_loss():
            logp, _ = self._logprobs(self.policy, item["batch"], self.model)
            loss = nft_token_loss(
                logp, item["old_logp"], item["right"], item["share"], item["mask"],
                max_completion_length=config.max_new_tokens, clamp_negative=config.clamp_negative,
            )  # fmt: skip
            loss = self.data_parallel(loss, item, "rows")
            terms = {}
            if item["ref_logp"] is not None:
                kl = self.reference_kl(logp, item)
                loss = loss + config.beta * self.data_parallel(kl, item, "tokens")
                terms["kl"] = kl.item()
            return loss, terms

        return self.optimize(compute_loss)
