"""What GRPO and RLOO share, and PPO does not: groups of completions per query, no value model,
the sampling policy's (and, with a KL term, the start's) log-probabilities of each completion.
`GroupTrainer` is their neutral base; each method is a sibling on it (`grpo.py`, `rloo.py`), as
in TRL, where `RLOOTrainer` is not a `GRPOTrainer`."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch

from hir.errors import HIRError
from hir.losses import token_logprobs
from hir.models import EncodedBatch, Policy, wrap_policy
from hir.models.adapters import is_adapted, reference_context
from hir.online.sampling import Sample
from hir.trainers.loop import OnlineTrainer
from hir.trainers.ppo import disable_dropout


class GroupTrainer(OnlineTrainer):
    """A method that learns from each query's group of `num_samples` completions of this
    iteration. Its config declares `beta` (the KL's weight: 0 builds no reference)."""

    keeps_duplicate_samples = True  # every completion of a group counts in its statistics

    def before_prepare(self) -> None:
        if self.accelerator.num_processes > 1:
            raise HIRError(
                f"{self.method} runs in one process for now (its groups are not yet shared out "
                "between processes); launch it without accelerate, or use HIR, FARL, SFT or PPO"
            )
        # Dropout off, as in PPO: the ratio to the sampling policy must be 1 before the first step.
        disable_dropout(self.policy.model)
        self.reference = None
        if self.config.beta and not is_adapted(self.policy.model):
            reference_model = copy.deepcopy(self.policy.model).eval().requires_grad_(False)
            self.reference = wrap_policy(reference_model, self.policy.tokenizer)
            self.reference.frozen_cache = self.policy.share_frozen_layers(reference_model)

    def training_items(self, iteration: int) -> list[Sample]:
        """This iteration's completions, each query's group together, in sampling order."""
        return [s for s in self.buffer.samples if s.iteration == iteration]

    def _logprobs(self, policy: Policy, batch: EncodedBatch, model=None):
        """Token log-probabilities under the distribution the samples came from: the logits
        divided by the sampling temperature (as TRL's)."""
        logits, labels = policy.output_logits(batch, model)
        return token_logprobs(logits / self.config.temperature, labels)

    @torch.no_grad()
    def _score(self, items: Sequence[Sample], rows: range) -> dict:
        """The micro-batch `rows` of `items`: its tensors, with the sampling policy's (and, with
        a KL term, the start's) token log-probabilities."""
        self.model.eval()
        chunk = [items[i] for i in rows]
        target = self.target_instruction
        prompts = [self.task.prompt(self.examples_by_id[s.query_id].query, target) for s in chunk]
        # The tokens as sampled (re-encoding the text could segment it otherwise).
        output_ids = [s.token_ids if s.token_ids is not None else self.policy.format.output_ids([s.output])[0]
                      for s in chunk]  # fmt: skip
        batch = self.policy.encode_ids(self.policy.format.prompt_ids(prompts), output_ids)
        batch = batch.to(self.accelerator.device)
        old_logp, mask = self._logprobs(self.policy, batch, self.model)
        ref_logp = None
        if self.config.beta:
            if self.reference is None:  # LoRA: the same network, its adapter off
                with reference_context(self.accelerator.unwrap_model(self.model)):
                    ref_logp, _ = self._logprobs(self.policy, batch, self.model)
            else:
                ref_logp, _ = self._logprobs(self.reference, batch)
        return {"batch": batch, "old_logp": old_logp, "ref_logp": ref_logp, "mask": mask.float(),
                "rows": list(rows)}  # fmt: skip
