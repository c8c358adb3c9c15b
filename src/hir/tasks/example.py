"""One query and what counts as a right answer to it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class Example:
    """One query and what counts as a right answer to it.

    `target` is the canonical answer (what SFT trains on and what the default feedback checks);
    `accepted` lists other forms a lenient verifier may accept; `meta` carries any extra columns
    of user data, for user feedback functions. `instruction` is the example's own target
    instruction, where each example asks something of its own (constraint instructions: the
    constraints its request comes with); None: the task's, as in the paper's tasks.
    """

    id: str
    query: str
    target: str
    accepted: tuple[str, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    instruction: str | None = None
