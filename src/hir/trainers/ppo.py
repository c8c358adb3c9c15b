"""PPO (RLHF as in InstructGPT) in the same loop as HIR, for both model kinds.

Each iteration is one rollout: HIR's sampling (same queries, samples, temperature) scored by
the feedback function (or a reward model), then `ppo_epochs` passes of clipped PPO over it:

    reward_t = -kl_coef * (log p(o_t) - log p_ref(o_t)) + [t = last] * score
    advantages, returns = GAE(reward, values; gamma, lam), advantages whitened
    loss = clipped policy loss + value_coef * clipped value loss (+ ptx_coef * CE on ptx data)

The reference policy is a frozen copy of the starting policy; the value function is a model of
its own (a copy of the starting policy with a scalar head). PPO-ptx adds the log-likelihood of a
"pretraining" set (for BIG-bench: the warm-up / SFT data) to limit the alignment tax.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from hir.losses import (
    IGNORE_INDEX,
    gae_advantages,
    kl_estimate,
    kl_penalized_rewards,
    label_smoothed_nll,
    masked_mean,
    ppo_policy_loss,
    ppo_value_loss,
    token_logprobs,
    whiten,
)
from hir.models import EncodedBatch, Policy, load_policy, wrap_policy
from hir.trainers.hir_config import HIRConfig, _help
from hir.trainers.hir_trainer import HIRTrainer


@dataclass
class PPOConfig(HIRConfig):
    """HIRConfig's sampling, evaluation and infrastructure, plus PPO's knobs (METHOD.md 3)."""

    kl_coef: float = field(
        default=0.02, metadata=_help("per-token KL penalty to the reference (InstructGPT: 0.02)")
    )
    gamma: float = field(default=1.0, metadata=_help("discount"))
    lam: float = field(default=0.95, metadata=_help("GAE lambda"))
    ppo_epochs: int = field(default=4, metadata=_help("passes over each rollout"))
    clip_range: float = field(default=0.2, metadata=_help("policy ratio clip"))
    value_clip_range: float = field(default=0.2, metadata=_help("value clip"))
    value_coef: float = field(default=0.1, metadata=_help("weight of the value loss"))
    ptx_coef: float = field(
        default=0.0, metadata=_help("PPO-ptx: weight of the pretraining CE (InstructGPT: 27.8)")
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        # On-policy: train on this iteration's rollout only.
        self.buffer_retention = "latest:1"


class ValueModel(nn.Module):
    """V(s_t) for every output token, at the positions `Policy.output_logits` uses: a copy of
    the policy's network and a scalar head on its last hidden state."""

    def __init__(self, policy: Policy) -> None:
        super().__init__()
        self.body = copy.deepcopy(policy.model)
        hidden = (
            self.body.config.hidden_size
            if hasattr(self.body.config, "hidden_size")
            else self.body.config.d_model
        )
        self.head = nn.Linear(hidden, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.is_encoder_decoder = policy.is_encoder_decoder

    def forward(self, batch: EncodedBatch) -> torch.Tensor:
        if self.is_encoder_decoder:
            hidden = self.body(**batch.inputs, output_hidden_states=True).decoder_hidden_states[-1]
            return self.head(hidden).squeeze(-1)
        width = int((batch.labels != IGNORE_INDEX).sum(-1).max())
        hidden = self.body(
            **batch.inputs, output_hidden_states=True, logits_to_keep=1
        ).hidden_states[-1]
        # The state before output token t is the hidden state one position earlier.
        return self.head(hidden[:, -width - 1 : -1]).squeeze(-1)


class PPOTrainer(HIRTrainer):
    method = "ppo"

    def __init__(
        self, model, task, config: PPOConfig, relabeler=None, reward_fn=None, ptx_pairs=None
    ) -> None:
        self._resumed_from = None
        super().__init__(model, task, config, relabeler)
        # The reference is the starting policy, also after a resume (when self.policy is not).
        start = (
            load_policy(config.model, device=str(self.accelerator.device))
            if self._resumed_from
            else self.policy
        )
        self.reference = wrap_policy(
            copy.deepcopy(start.model).eval().requires_grad_(False), self.policy.tokenizer
        )
        self.value_model = ValueModel(start).to(self.accelerator.device)
        self.value_optimizer = torch.optim.AdamW(
            self.value_model.parameters(), lr=config.learning_rate
        )
        self.value_model, self.value_optimizer = self.accelerator.prepare(
            self.value_model, self.value_optimizer
        )
        if self._resumed_from:
            state = torch.load(self._resumed_from / "value_state.pt", weights_only=True)
            self.accelerator.unwrap_model(self.value_model).load_state_dict(state["value_model"])
            self.value_optimizer.load_state_dict(state["value_optimizer"])
        self.reward_fn = (
            reward_fn  # (prompts, outputs, scores) -> rewards; default: the feedback scores
        )
        self.ptx_pairs = list(ptx_pairs or [])

    def _restore(self, folder) -> None:
        super()._restore(folder)
        self._resumed_from = folder

    def _write_checkpoint(self, folder) -> None:
        super()._write_checkpoint(folder)
        state = {
            "value_model": self.accelerator.unwrap_model(self.value_model).state_dict(),
            "value_optimizer": self.value_optimizer.state_dict(),
        }
        torch.save(state, folder / "value_state.pt")

    def _train_on_buffer(self, iteration: int) -> dict:
        config = self.config
        target = self.relabeler.target_instruction
        samples = [s for s in self.buffer.samples if s.iteration == iteration]
        if self.accelerator.num_processes > 1:
            # Each process learns from its share; padding evens the shares, so that every
            # process takes the same number of optimizer steps.
            with self.accelerator.split_between_processes(samples, apply_padding=True) as mine:
                samples = list(mine)
        # Old log-probabilities and values without dropout noise.
        self.model.eval()
        self.value_model.eval()
        rollout = []
        for begin in range(0, len(samples), config.batch_size):
            chunk = samples[begin : begin + config.batch_size]
            prompts = [
                self.task.prompt(self.examples_by_id[s.query_id].query, target) for s in chunk
            ]
            outputs = [s.output for s in chunk]
            scores = torch.tensor([s.score for s in chunk])
            if self.reward_fn is not None:
                scores = torch.as_tensor(
                    self.reward_fn(prompts, outputs, scores), dtype=torch.float
                )
            # The tokens as sampled: re-encoding the text can segment it into tokens the policy
            # never chose, whose log-ratios to the reference then dominate the KL.
            output_ids = [
                s.token_ids if s.token_ids is not None else self.policy.output_ids([s.output])[0]
                for s in chunk
            ]
            batch = self.policy.encode_ids(self.policy.prompt_ids(prompts), output_ids)
            rollout.append(self._score_rollout(batch.to(self.accelerator.device), scores))

        totals: dict[str, float] = {}
        steps = 0
        self.model.train()
        self.value_model.train()
        for _ in range(config.ppo_epochs):
            for index in torch.randperm(len(rollout), generator=self.generator).tolist():
                terms = self._ppo_step(rollout[index])
                for key, value in terms.items():
                    totals[key] = totals.get(key, 0.0) + value
                steps += 1
        metrics = {key: value / max(steps, 1) for key, value in totals.items()}
        metrics.update({
            "reward": float(torch.cat([r["scores"] for r in rollout]).mean()),
            "kl": sum(r["kl"] for r in rollout) / len(rollout),
            "train_steps": steps,
        })  # fmt: skip
        return metrics

    def _logprobs(
        self, policy: Policy, batch: EncodedBatch, model=None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Token log-probabilities under the distribution the samples came from: the logits
        divided by the sampling temperature."""
        logits, labels = policy.output_logits(batch, model)
        return token_logprobs(logits / self.config.temperature, labels)

    @torch.no_grad()
    def _score_rollout(self, batch: EncodedBatch, scores: torch.Tensor) -> dict:
        logp, mask = self._logprobs(self.policy, batch, self.model)
        ref_logp, _ = self._logprobs(self.reference, batch)
        mask = mask.float()
        values = self.value_model(batch) * mask
        scores = scores.to(logp.device)
        rewards = kl_penalized_rewards(scores, logp, ref_logp, mask, self.config.kl_coef)
        advantages, returns = gae_advantages(
            rewards, values, mask, self.config.gamma, self.config.lam
        )
        # k1, the mean log-ratio (unbiased, and what the reward's penalty uses).
        kl = float(masked_mean(kl_estimate(logp, ref_logp, "k1"), mask))
        return {"batch": batch, "old_logp": logp, "old_values": values, "advantages": whiten(advantages, mask),
                "returns": returns, "mask": mask, "scores": scores.cpu(), "kl": kl}  # fmt: skip

    def _ppo_step(self, item: dict) -> dict[str, float]:
        config = self.config
        logp, _ = self._logprobs(self.policy, item["batch"], self.model)
        policy_loss, clip_fraction = ppo_policy_loss(
            logp, item["old_logp"], item["advantages"], item["mask"], config.clip_range
        )
        values = self.value_model(item["batch"])
        value_loss = ppo_value_loss(
            values, item["old_values"], item["returns"], item["mask"], config.value_clip_range
        )
        loss = policy_loss + config.value_coef * value_loss
        terms = {
            "loss_policy": policy_loss.item(),
            "loss_value": value_loss.item(),
            "clip_fraction": clip_fraction.item(),
        }
        if config.ptx_coef and self.ptx_pairs:
            picks = torch.randint(
                len(self.ptx_pairs),
                (min(config.batch_size, len(self.ptx_pairs)),),
                generator=self.generator,
            )
            prompts, outputs = zip(*(self.ptx_pairs[i] for i in picks.tolist()))
            ptx_loss = label_smoothed_nll(
                *self.policy.logits_for(list(prompts), list(outputs), self.model)
            )
            loss = loss + config.ptx_coef * ptx_loss
            terms["loss_ptx"] = ptx_loss.item()
        self.accelerator.backward(loss)
        if config.max_grad_norm:
            self.accelerator.clip_grad_norm_(self.model.parameters(), config.max_grad_norm)
            self.accelerator.clip_grad_norm_(self.value_model.parameters(), config.max_grad_norm)
        self.optimizer.step()
        self.value_optimizer.step()
        self.optimizer.zero_grad()
        self.value_optimizer.zero_grad()
        terms["loss"] = loss.item()
        return terms
