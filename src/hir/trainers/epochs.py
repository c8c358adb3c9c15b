"""The supervised epoch loop (one iteration's epochs over its training items) that HIR, FARL, SFT
and the warm-up share: shuffle with a seeded generator, cut into
batches, compute a loss, take `optimizer_step` (accelerate: gradient accumulation, clipping,
mixed precision)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from hir.runs.crash_points import crash_point
from hir.trainers.optimization import optimizer_step

LossFn = Callable[[list[Any]], tuple[torch.Tensor, dict[str, float]]]


def train_epochs(
    accelerator: Accelerator,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    items: Sequence[Any],
    loss_fn: LossFn,
    *,
    epochs: int,
    batch_size: int,
    generator: torch.Generator,
    max_grad_norm: float | None = 1.0,
    progress: str | None = None,
    group_of: Callable[[Any], Hashable] | None = None,
) -> dict[str, float]:
    """Train `epochs` passes over `items`; returns the mean of each loss term and throughput.

    With `group_of`, items of one group (e.g. one query's samples) stay next to each other:
    groups are shuffled, not items, so that a batch holds few groups and their shared prompts
    run once (`Policy.statistics_for`)."""
    model.train()
    totals: dict[str, float] = defaultdict(float)
    steps, examples, start = 0, 0, time.perf_counter()
    batches_per_epoch = -(-len(items) // batch_size)
    # disable=None: tqdm shows the bar on a terminal only.
    bar = tqdm(
        total=epochs * batches_per_epoch,
        desc=progress,
        disable=None if progress else True,
        leave=False,
    )
    for _ in range(epochs):
        order = shuffled_order(items, generator, group_of)
        for begin in range(0, len(order), batch_size):
            batch = [items[i] for i in order[begin : begin + batch_size]]
            mine = process_share(batch, accelerator.process_index, accelerator.num_processes)
            _, terms = optimizer_step(accelerator, [model], [optimizer], [scheduler],
                                      lambda mine=mine: loss_fn(mine), max_grad_norm)  # fmt: skip
            crash_point("training")
            for name, value in terms.items():
                totals[name] += value
            steps += 1
            examples += len(batch)
            bar.update(1)
            bar.set_postfix(loss=f"{terms['loss']:.3f}")
    bar.close()
    seconds = time.perf_counter() - start
    metrics = {name: total / max(steps, 1) for name, total in totals.items()}
    metrics.update(
        {"train_steps": steps, "train_examples_per_second": examples / max(seconds, 1e-9)}
    )
    return metrics


def shuffled_order(
    items: Sequence[Any],
    generator: torch.Generator,
    group_of: Callable[[Any], Hashable] | None = None,
) -> list[int]:
    """A seeded permutation of the item indices; with `group_of`, a permutation of the groups
    with each group's items together, in their original order."""
    if group_of is None:
        return torch.randperm(len(items), generator=generator).tolist()
    groups: dict[Hashable, list[int]] = defaultdict(list)
    for index, item in enumerate(items):
        groups[group_of(item)].append(index)
    members = list(groups.values())
    return [
        i for g in torch.randperm(len(members), generator=generator).tolist() for i in members[g]
    ]


def process_share(batch: Sequence[Any], rank: int, world: int) -> list[Any]:
    """This process's contiguous share of a batch (contiguous, so a query's rows that share a
    prompt stay together); data parallelism averages the shares' gradients. A batch smaller
    than the number of processes is repeated so that every process has rows to step on."""
    if world == 1:
        return list(batch)
    if len(batch) < world:
        batch = [batch[i % len(batch)] for i in range(world)]
    return list(batch[rank * len(batch) // world : (rank + 1) * len(batch) // world])
