"""Reward model (InstructGPT stage 2): a scalar head on a copy of the policy's network
(`ScalarHeadModel`, shared with PPO's value model), read at the output's last token, trained
from rankings with the K-wise loss -1/C(K,2) sum_{i<j} log sigmoid(r(x, y_i) - r(x, y_j))
(all pairs of one prompt together).

Rankings come from a JSONL of human comparisons (`{"prompt": ..., "ranked": [best, ...]}` or
`{"prompt": ..., "chosen": ..., "rejected": ...}`), or are derived from a feedback function:
outputs of the same query ordered by score, ties dropped.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType

from hir.errors import HIRError
from hir.losses import ranking_loss
from hir.models import Policy
from hir.models.reward_model import RewardModel
from hir.models.scalar_head import last_output_scalars
from hir.models.speed.sharding import share_tied_embeddings
from hir.online.sampling import Sample
from hir.runs.fileio import read_jsonl_objects
from hir.tasks.base import Task
from hir.trainers.optimization import build_accelerator, optimizer_step

# (prompt, outputs ranked best first)
RankedGroup = tuple[str, list[str]]


def rankings_from_feedback(
    task: Task, samples: Sequence[Sample], instruction: str
) -> list[RankedGroup]:
    """Per query, its distinct-scored outputs best first (one output per score level), with the
    prompt the reward model will read: `task` must be formatted for the policy
    (`Task.for_format`), as the samples were."""
    if task.prompt_format is None:
        raise HIRError(
            "rankings_from_feedback needs the task in the policy's prompt format: "
            "pass task.for_format(policy.chat), as sampling used"
        )
    by_query: dict[str, dict[float, str]] = defaultdict(dict)
    for sample in samples:
        by_query[sample.query_id].setdefault(sample.score, sample.output)
    examples = {e.id: e for e in task.examples}
    groups = []
    for query_id, outputs in by_query.items():
        if len(outputs) > 1:
            ranked = [outputs[score] for score in sorted(outputs, reverse=True)]
            groups.append((task.prompt(examples[query_id].query, instruction), ranked))
    return groups


def load_comparisons(path: str | Path) -> list[RankedGroup]:
    groups = []
    for number, record in read_jsonl_objects(path, "comparisons"):
        prompt = record.get("prompt")
        ranked = record.get("ranked") or (
            [record["chosen"], record["rejected"]]
            if "chosen" in record and "rejected" in record
            else None
        )
        if not isinstance(prompt, str) or not ranked or len(ranked) < 2:
            raise HIRError(
                f"{path} line {number}: give 'prompt' and either 'ranked' (best first, 2+) or 'chosen' and 'rejected'"
            )
        groups.append((prompt, [str(o) for o in ranked]))
    return groups


def train_reward_model(
    policy: Policy, groups: Sequence[RankedGroup], *, epochs: int, learning_rate: float,
    groups_per_step: int = 16, seed: int = 0, max_grad_norm: float = 1.0,
    accelerator: Accelerator | None = None,
) -> tuple[RewardModel, dict[str, float]]:  # fmt: skip
    """Train a reward model on ranked groups with the trainers' `optimizer_step` (under
    `accelerator`, default one on the policy's device); returns it (sharded where the
    accelerator shards: `save_reward_model` gathers it) and its final-epoch pair accuracy.
    Every process trains on every group (the gradients agree; the groups are few)."""
    if not groups:
        raise HIRError(
            "no rankings to train the reward model on: every query's outputs scored the same"
        )
    accelerator = accelerator or build_accelerator(
        "cpu" if policy.device.type == "cpu" else "auto", "no"
    )
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        raise HIRError("reward-model training does not run under DeepSpeed: shard it with FSDP2 "
                       "(configs/accelerate/fsdp2.yaml), or launch data parallel")  # fmt: skip
    model = RewardModel(policy).to(policy.device)
    if accelerator.is_fsdp2:
        share_tied_embeddings(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    prepared, optimizer = accelerator.prepare(model, optimizer)
    rng = random.Random(seed)
    order = list(range(len(groups)))
    metrics = {}
    for _ in range(epochs):
        rng.shuffle(order)
        losses, correct, pairs = [], 0, 0
        prepared.train()
        for begin in range(0, len(order), groups_per_step):
            chunk = [groups[i] for i in order[begin : begin + groups_per_step]]

            def compute_loss(chunk=chunk):
                nonlocal correct, pairs
                prompts = [p for p, ranked in chunk for _ in ranked]
                outputs = [o for _, ranked in chunk for o in ranked]
                batch = policy.encode(prompts, outputs).to(policy.device)
                rewards = last_output_scalars(*prepared(batch))
                loss, offset = 0.0, 0
                for _, ranked in chunk:
                    group = rewards[offset : offset + len(ranked)]
                    offset += len(ranked)
                    loss = loss + ranking_loss(group)
                    i, j = torch.triu_indices(len(ranked), len(ranked), offset=1)
                    correct += int((group[i] > group[j]).sum())
                    pairs += len(i)
                return loss / len(chunk), {}

            loss, _ = optimizer_step(accelerator, [prepared], [optimizer], [], compute_loss,
                                     max_grad_norm)  # fmt: skip
            losses.append(loss.item())
        metrics = {
            "reward_model_loss": sum(losses) / len(losses),
            "reward_model_pair_accuracy": correct / max(pairs, 1),
        }
    return accelerator.unwrap_model(prepared), metrics
