"""A starting policy for tasks where no instruction-following model can be downloaded: a small
model built here, warmed up on labeled examples under both instructions.

The paper starts from FLAN-T5, which already follows "give a correct answer" and "give a wrong
answer"; a model built from scratch does not, and without that HIR has nothing to relabel. The
warm-up teaches both instructions on labeled examples that are then *held out* of the training
queries, so every method compared afterwards learns from queries whose labels it never saw
(except SFT, which is meant to use them).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from accelerate.utils import set_seed

from hir.errors import HIRError
from hir.models import Policy, load_policy
from hir.models.small_models import ARCHITECTURES, SIZES, build_small_model, task_corpus
from hir.tasks.base import Example, Task
from hir.trainers.finetune import instruction_pairs, supervised_finetune


@dataclass(frozen=True)
class SmallStart:
    """How to build and warm up the starting policy."""

    arch: str = "gpt2"
    size: str = "small"
    vocab_size: int = 1000
    # Share of the training split whose labels the warm-up uses; those queries are then held
    # out of the training queries that the compared methods see.
    labeled_fraction: float = 0.4
    epochs: int = 6
    learning_rate: float = 1e-3
    batch_size: int = 32

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise HIRError(f"unknown warm-start architecture {self.arch!r}: choose one of {', '.join(ARCHITECTURES)}")  # fmt: skip
        if self.size not in SIZES:
            raise HIRError(f"unknown warm-start size {self.size!r}: choose one of {', '.join(SIZES)}")  # fmt: skip
        if not 0.0 < self.labeled_fraction < 1.0:
            raise HIRError(f"warm-start labeled fraction must be in (0, 1), got {self.labeled_fraction}")  # fmt: skip

    @classmethod
    def parse(cls, spec: str, **settings) -> SmallStart:
        """From "ARCH-SIZE", e.g. "gpt2-small" or "t5-tiny"."""
        arch, _, size = spec.partition("-")
        if not size:
            raise HIRError(
                f"--small_start must look like ARCH-SIZE (e.g. gpt2-small), got {spec!r}"
            )
        return cls(arch=arch, size=size, **settings)


def build_and_warm_up(
    task: Task,
    warmup_examples: Sequence[Example],
    output_dir: str | Path,
    settings: SmallStart = SmallStart(),
    seed: int = 0,
) -> tuple[Policy, list[tuple[str, str]]]:
    """Build a small model whose tokenizer is trained on the task's training text, fine-tune it
    on `warmup_examples` under both instructions, and save it to `output_dir/model-start`.
    Returns the policy and the (prompt, output) pairs it was trained on."""
    output_dir = Path(output_dir)
    set_seed(seed)
    print(f"hir: building a small {settings.arch} ({settings.size}) for {task.name} in {output_dir / 'model-init'}")  # fmt: skip
    model_dir = build_small_model(
        settings.arch,
        task_corpus(task),
        output_dir / "model-init",
        size=settings.size,
        vocab_size=settings.vocab_size,
        seed=seed,
    )
    policy = load_policy(model_dir)
    print(f"hir: warm-up on {len(warmup_examples)} labeled examples, both instructions")
    pairs = instruction_pairs(task, warmup_examples, random.Random(seed))
    supervised_finetune(
        policy,
        pairs,
        epochs=settings.epochs,
        learning_rate=settings.learning_rate,
        batch_size=settings.batch_size,
        seed=seed,
        progress="warm-up",
    )
    policy.save(output_dir / "model-start")
    return policy, pairs


def small_start_from_split(
    task: Task, output_dir: str | Path, settings: SmallStart = SmallStart(), seed: int = 0
) -> tuple[Task, Path, list[tuple[str, str]]]:
    """Warm up on a seeded `labeled_fraction` of the training split and hold those queries out.

    Returns the task without them (its validation and test splits unchanged), the folder of the
    starting policy and the warm-up's (prompt, output) pairs."""
    train = task.split("train")
    count = int(round(settings.labeled_fraction * len(train)))
    if count < 1 or count >= len(train):
        raise HIRError(
            f"a warm-up share of {settings.labeled_fraction} leaves {count} of {len(train)} training "
            f"examples of {task.name!r} for the warm-up; choose a share that keeps some on each side"
        )
    warmup = random.Random(seed).sample(train, count)
    _, pairs = build_and_warm_up(task, warmup, output_dir, settings, seed)
    remaining = dataclasses.replace(task, held_out_train_ids=frozenset(e.id for e in warmup))
    return remaining, Path(output_dir) / "model-start", pairs
