"""hir: Hindsight Instruction Relabeling (Zhang et al., ICML 2023) for Hugging Face models.

Sample answers, score them with a feedback function, relabel each (query, answer) with an
instruction the answer satisfies, and train with supervised learning.

    from hir import HIRTrainer, HIRConfig, load_task
    summary = HIRTrainer("google/flan-t5-base", load_task("synthetic/sort"), HIRConfig()).train()
"""

from __future__ import annotations

import importlib

from hir.errors import HIRError
from hir.tasks import Example, Task, list_tasks, load_task

__version__ = "0.1.0"

# Imported on first use, so that `import hir` (and `hir tasks list`) stays quick.
_LAZY = {
    "HIRTrainer": "hir.trainers.hir", "HIRConfig": "hir.trainers.hir",
    "FARLTrainer": "hir.trainers.farl", "FARLConfig": "hir.trainers.farl",
    "SFTTrainer": "hir.trainers.sft", "SFTConfig": "hir.trainers.sft",
    "PPOTrainer": "hir.trainers.ppo", "PPOConfig": "hir.trainers.ppo",
    "GRPOTrainer": "hir.trainers.grpo", "GRPOConfig": "hir.trainers.grpo",
    "RLOOTrainer": "hir.trainers.rloo", "RLOOConfig": "hir.trainers.rloo",
    "NFTTrainer": "hir.trainers.nft", "NFTConfig": "hir.trainers.nft",
    "NSRTrainer": "hir.trainers.nsr", "NSRConfig": "hir.trainers.nsr",
    "Policy": "hir.models", "load_policy": "hir.models",
    "evaluate": "hir.online.evaluate", "get_method": "hir.trainers",
}  # fmt: skip

__all__ = ["Example", "HIRError", "Task", "__version__", "list_tasks", "load_task", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hir' has no attribute {name!r}")
