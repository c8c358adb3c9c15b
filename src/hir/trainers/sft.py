"""SFT baseline (docs/method.md section 3): supervised training on the ground-truth answers of the
training queries (labels that HIR and FARL never see). It runs in the same loop as the other
methods, so it is evaluated, logged and checkpointed per iteration like them; it samples
nothing, and one iteration is `epochs_per_iteration` epochs over the labeled queries."""

from __future__ import annotations

from dataclasses import dataclass, field

from hir.options import flag_help
from hir.trainers.loop import SupervisedTrainer, TrainItem
from hir.trainers.run_config import RunConfig, SupervisedFields


@dataclass
class SFTConfig(SupervisedFields, RunConfig):
    """SFT on the labels: `epochs_per_iteration` epochs of CE on (correct instruction, query)
    -> target per iteration."""

    labels_per_iteration: int | None = field(
        default=None,
        metadata=flag_help("train on a random subset of this many labeled queries per iteration "
                           "(default: all of them); a sampling method's "
                           "max_queries_per_iteration gives SFT its number of updates"),
    )  # fmt: skip

    def checks(self) -> list[tuple[bool, str]]:
        return super().checks() + [
            (self.labels_per_iteration is None or self.labels_per_iteration >= 1,
             "labels_per_iteration must be >= 1"),
        ]  # fmt: skip


class SFTTrainer(SupervisedTrainer):
    method = "sft"
    config_class = SFTConfig
    samples = False

    def training_items(self, iteration: int) -> list[TrainItem]:
        target = self.target_instruction
        examples = self.draw_train_examples(self.config.labels_per_iteration)
        return [TrainItem(example, self.task.instruction_for(example, target), example.target)
                for example in examples]  # fmt: skip
