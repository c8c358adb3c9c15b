"""Supervised fine-tuning outside the online loop, on (prompt, output) pairs, and the pairs that
teach a model both instructions: what the warm-ups (`hir warm-up`, `--small_start`) train on.
It runs the supervised epochs and the optimizer step every trainer uses."""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch

from hir.losses import label_smoothed_nll
from hir.models.policy import Policy
from hir.tasks.base import Example, Task
from hir.trainers.epochs import train_epochs
from hir.trainers.optimization import build_accelerator, require_unsharded


def instruction_pairs(
    task: Task, examples: Sequence[Example], rng: random.Random
) -> list[tuple[str, str]]:
    """For each labeled example, two (prompt, output) pairs: the correct-answer instruction with
    the target, and the wrong-answer instruction with another example's target that the
    feedback function scores below 1 (a plausible wrong answer of the right shape)."""
    pairs = []
    targets = [e.target for e in examples]
    for example in examples:
        pairs.append((task.prompt(example.query, task.correct_instruction), example.target))
        for _ in range(20):
            candidate = rng.choice(targets)
            if task.score(candidate, example) < 1.0:
                pairs.append((task.prompt(example.query, task.wrong_instruction), candidate))
                break
    return pairs


def supervised_finetune(
    policy: Policy,
    pairs: Sequence[tuple[str, str]],
    *,
    epochs: int,
    learning_rate: float,
    batch_size: int = 32,
    label_smoothing: float = 0.0,
    seed: int = 0,
    progress: str | None = "supervised fine-tuning",
) -> dict[str, float]:
    """Train `policy` in place on (prompt, output) pairs with token cross-entropy."""
    accelerator = build_accelerator("cpu" if policy.device.type == "cpu" else "auto", "no")
    require_unsharded(accelerator, "supervised fine-tuning (the warm-up)")
    optimizer = torch.optim.AdamW(policy.model.parameters(), lr=learning_rate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    model, optimizer, scheduler = accelerator.prepare(policy.model, optimizer, scheduler)

    def loss_fn(batch):
        prompts, outputs = zip(*batch)
        statistics = policy.statistics_for(list(prompts), list(outputs), model)
        loss = label_smoothed_nll(statistics, label_smoothing)
        return loss, {"loss": loss.item()}

    generator = torch.Generator().manual_seed(seed)
    return train_epochs(
        accelerator, model, optimizer, scheduler, list(pairs), loss_fn,
        epochs=epochs, batch_size=batch_size, generator=generator, progress=progress,
    )  # fmt: skip
