"""FARL / filtered SFT (Uesato et al., 2022; docs/method.md section 3): HIR's sampling, but keep only
the correct outputs and train on them with cross-entropy under the target instruction. The one
difference to HIR is "filter" instead of "relabel": no wrong-answer instruction, no contrastive
term, no entropy bonus, and the same hyperparameters otherwise. Under a reward (model), whose
scores say "better", not "correct", it keeps the buffer's best-scored share."""

from __future__ import annotations

from dataclasses import dataclass, field

from hir.errors import HIRError
from hir.online.relabel import in_top_share
from hir.options import flag_help
from hir.trainers.loop import SupervisedTrainer, TrainItem
from hir.trainers.run_config import SamplingConfig, SupervisedFields


@dataclass
class FARLConfig(SupervisedFields, SamplingConfig):
    """FARL / filtered SFT: sample like HIR, keep the outputs whose score reaches
    `success_threshold` (or the best-scored `keep_top_share` of the buffer), train
    `epochs_per_iteration` epochs of CE on them."""

    keep_top_share: float | None = field(
        default=None,
        metadata=flag_help("keep this share of the buffer, the best scored, instead of the "
                           "outputs that reach success_threshold (needed with a reward model; "
                           "e.g. 0.25)"),
    )  # fmt: skip

    def checks(self) -> list[tuple[bool, str]]:
        return super().checks() + [
            (self.keep_top_share is None or 0 < self.keep_top_share <= 1,
             "keep_top_share must be in (0, 1]"),
        ]  # fmt: skip


class FARLTrainer(SupervisedTrainer):
    method = "farl"
    config_class = FARLConfig

    def __init__(self, model, task, config: FARLConfig | None = None, *, tokenizer=None,
                 reward=None) -> None:  # fmt: skip
        super().__init__(model, task, config, tokenizer=tokenizer, reward=reward)
        if self.reward is not None:
            self.check_reward_settings(self.config)

    @classmethod
    def check_reward_settings(cls, config: FARLConfig) -> None:
        if config.keep_top_share is None:
            raise HIRError(
                "FARL with a reward (model) needs a share to keep: its scores have no correct/"
                "wrong threshold; pass --keep_top_share (e.g. 0.25)"
            )

    def training_items(self, iteration: int) -> list[TrainItem]:
        """The buffer's correct (or best-scored) samples, under the target instruction."""
        target = self.target_instruction
        samples = self.buffer.samples
        share = self.config.keep_top_share
        if share is None:
            kept = [self.is_success(s.score) for s in samples]
        else:
            kept = in_top_share([s.score for s in samples], share)
        examples = self.examples_by_id
        return [TrainItem(examples[s.query_id], self.task.instruction_for(examples[s.query_id], target),
                          s.output, answer=s.answer)
                for s, keep in zip(samples, kept) if keep]  # fmt: skip
