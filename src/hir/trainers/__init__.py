"""The methods, side by side: one file each (`hir.py`, `farl.py`, `sft.py`, `ppo.py`, `grpo.py`,
`rloo.py`, `nft.py`, `nsr.py`; the last four on their neutral base `groups.py`), on the
shared online loop in `loop.py` (whose supervised epochs are in `epochs.py`).

`METHODS` is the one registry that `hir train --method`, `hir compare` and Python use:

    trainer_class, config_class = get_method("ppo")
"""

from __future__ import annotations

import importlib

from hir.errors import HIRError

METHODS: dict[str, str] = {
    "hir": "hir.trainers.hir:HIRTrainer",
    "farl": "hir.trainers.farl:FARLTrainer",
    "sft": "hir.trainers.sft:SFTTrainer",
    "ppo": "hir.trainers.ppo:PPOTrainer",
    "grpo": "hir.trainers.grpo:GRPOTrainer",
    "rloo": "hir.trainers.rloo:RLOOTrainer",
    "nft": "hir.trainers.nft:NFTTrainer",
    "nsr": "hir.trainers.nsr:NSRTrainer",
}


def get_method(name: str):
    """(trainer class, config class) of a method name."""
    if name not in METHODS:
        raise HIRError(f"unknown method {name!r}: choose from {', '.join(METHODS)}")
    module, _, attribute = METHODS[name].partition(":")
    trainer_class = getattr(importlib.import_module(module), attribute)
    return trainer_class, trainer_class.config_class
