"""FARL / filtered SFT (Uesato et al., 2022; docs/method.md section 3): HIR's sampling, but keep only
the correct outputs and train on them with cross-entropy under the target instruction. The one
difference to HIR is "filter" instead of "relabel": no wrong-answer instruction, no contrastive
term, no entropy bonus, and the same hyperparameters otherwise."""

from __future__ import annotations

from dataclasses import dataclass

from hir.trainers.online import SupervisedTrainer, TrainItem
from hir.trainers.online_config import SamplingConfig, SupervisedFields


@dataclass
class FARLConfig(SupervisedFields, SamplingConfig):
    """FARL / filtered SFT: sample like HIR, keep the outputs whose score reaches
    `success_threshold`, train `epochs_per_iteration` epochs of CE on them."""


class FARLTrainer(SupervisedTrainer):
    method = "farl"
    config_class = FARLConfig

    def training_items(self, iteration: int) -> list[TrainItem]:
        """The buffer's correct samples, under the target instruction."""
        target = self.target_instruction
        return [TrainItem(self.examples_by_id[s.query_id], target, s.output)
                for s in self.buffer.samples if self.is_success(s.score)]  # fmt: skip
