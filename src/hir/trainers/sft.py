"""SFT baseline (docs/method.md section 3): supervised training on the ground-truth answers of the
training queries (labels that HIR and FARL never see). It runs in the same loop as the other
methods, so it is evaluated, logged and checkpointed per iteration like them; it samples
nothing, and one iteration is `epochs_per_iteration` epochs over the labeled queries."""

from __future__ import annotations

from dataclasses import dataclass

from hir.trainers.online import SupervisedTrainer, TrainItem
from hir.trainers.online_config import RunConfig, SupervisedFields


@dataclass
class SFTConfig(SupervisedFields, RunConfig):
    """SFT on the labels: `epochs_per_iteration` epochs of CE on (correct instruction, query)
    -> target per iteration."""


class SFTTrainer(SupervisedTrainer):
    method = "sft"
    config_class = SFTConfig

    def training_items(self, iteration: int) -> list[TrainItem]:
        target = self.target_instruction
        return [TrainItem(example, target, example.target) for example in self.train_examples]
