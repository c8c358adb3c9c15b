"""SFT baseline: supervised training on the ground-truth answers of the training queries (labels
that HIR and FARL never see), in the same loop, so that it is evaluated, logged and
checkpointed per iteration like them. One iteration = `epochs_per_iteration` epochs; nothing is
sampled."""

from __future__ import annotations

from hir.trainers.farl import FARLTrainer
from hir.trainers.hir_trainer import TrainItem


class SFTTrainer(FARLTrainer):
    method = "sft"

    def _sample(self, iteration: int) -> dict:
        return {}

    def _train_on_buffer(self, iteration: int) -> dict:
        target = self.relabeler.target_instruction
        items = [TrainItem(example, target, example.target) for example in self.train_examples]
        return self._train_on(items, iteration)
