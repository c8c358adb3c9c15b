"""The one optimizer step every trainer takes (the supervised epochs of HIR, FARL, SFT and the
warm-ups, PPO's policy and value models, the reward model), and the one way to get the
accelerator it runs under. Gradient accumulation, clipping, mixed precision and data
parallelism are accelerate's.

    accelerator = build_accelerator(device="auto", mixed_precision="auto")
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    loss, terms = optimizer_step(accelerator, [model], [optimizer], [scheduler],
                                 compute_loss, max_grad_norm=1.0)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType

from hir.errors import HIRError

LossAndTerms = tuple[torch.Tensor, dict[str, float]]


def build_accelerator(
    device: str = "auto",
    mixed_precision: str = "auto",
    gradient_accumulation_steps: int = 1,
    log_with: list[str] | None = None,
    project_dir: str | None = None,
) -> Accelerator:
    """`device` "cpu" keeps everything on the CPU; "auto" (or "cuda") lets accelerate choose.
    `mixed_precision` "auto" is bf16 on a GPU that supports it, else none."""
    return Accelerator(
        cpu=device == "cpu",
        mixed_precision=resolve_mixed_precision(mixed_precision),
        gradient_accumulation_steps=gradient_accumulation_steps,
        log_with=log_with or None,
        project_dir=project_dir,
    )


def require_unsharded(accelerator: Accelerator, what: str) -> None:
    """Refuse, in one line, to run `what` (a step not yet made to gather sharded weights) under
    FSDP or DeepSpeed."""
    if accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        raise HIRError(
            f"{what} does not run sharded yet ({accelerator.distributed_type.value}): launch it "
            "data parallel (accelerate launch without a config file) and train sharded after"
        )


def resolve_mixed_precision(setting: str) -> str:
    if setting != "auto":
        return setting
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def optimizer_step(
    accelerator: Accelerator,
    models: Sequence[torch.nn.Module],
    optimizers: Sequence[torch.optim.Optimizer],
    schedulers: Sequence,
    compute_loss: Callable[[], LossAndTerms],
    max_grad_norm: float | None = None,
) -> LossAndTerms:
    """One micro-batch: `compute_loss()`, backward, and on the micro-batch that completes an
    accumulated step, each model's gradients clipped to `max_grad_norm` (0 or None: no
    clipping), every optimizer and scheduler stepped and the gradients zeroed (accelerate
    makes the steps in between no-ops). Returns what `compute_loss` returned."""
    with accelerator.accumulate(*models):
        # The whole loss under mixed precision, not only the models' forward passes (accelerate
        # wraps those): hir runs the output layer itself, fused with the loss's statistics.
        with accelerator.autocast():
            loss, terms = compute_loss()
        accelerator.backward(loss)
        if max_grad_norm and accelerator.sync_gradients:
            for model in models:
                accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
        for optimizer in optimizers:
            optimizer.step()
        for scheduler in schedulers:
            scheduler.step()
        for optimizer in optimizers:
            optimizer.zero_grad()
    return loss, terms
