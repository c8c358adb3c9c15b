"""FARL / filtered SFT (Uesato et al., 2022): HIR's sampling, but keep only the correct outputs
and train on them with plain cross-entropy under the target instruction. The one difference to
HIR is "filter" instead of "relabel": no wrong-answer instruction, no contrastive term, no
entropy bonus, and the same hyperparameters otherwise."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from hir.losses import label_smoothed_nll
from hir.sampling import Sample
from hir.trainers.hir_trainer import HIRTrainer, TrainItem


class FARLTrainer(HIRTrainer):
    method = "farl"

    def relabel(self, samples: Sequence[Sample]) -> list[TrainItem]:
        """The correct samples only, under the target instruction."""
        target = self.relabeler.target_instruction
        return [
            TrainItem(self.examples_by_id[s.query_id], target, s.output)
            for s in samples
            if s.score >= self.config.success_threshold
        ]

    def loss(self, batch: list[TrainItem]) -> tuple[torch.Tensor, dict[str, float]]:
        prompts = [self.task.prompt(item.example.query, item.instruction) for item in batch]
        logits, labels = self.policy.logits_for(
            prompts, [item.output for item in batch], self.model
        )
        loss = label_smoothed_nll(logits, labels, self.config.label_smoothing)
        return loss, {"loss": loss.item(), "loss_sft": loss.item()}
