"""The supervised epoch loop every trainer shares: shuffle with a seeded generator, cut into
batches, compute a loss, step with accelerate (gradient accumulation, clipping, mixed
precision)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

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
) -> dict[str, float]:
    """Train `epochs` passes over `items`; returns the mean of each loss term and throughput."""
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
        order = torch.randperm(len(items), generator=generator).tolist()
        for begin in range(0, len(order), batch_size):
            batch = [items[i] for i in order[begin : begin + batch_size]]
            with accelerator.accumulate(model):
                loss, terms = loss_fn(batch)
                accelerator.backward(loss)
                if max_grad_norm and accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
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
