"""Sharing work out between data-parallel processes (accelerate)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from accelerate import Accelerator
from accelerate.utils import gather_object

Item = TypeVar("Item")


def on_shares(
    accelerator: Accelerator | None,
    items: Sequence[Item],
    work: Callable[[Sequence[Item]], list[Any]],
) -> list[Any]:
    """`work` on this process's contiguous share of `items`; every process gets every result,
    in the order of `items` (one process: `work(items)`)."""
    if accelerator is None or accelerator.num_processes == 1:
        return work(items)
    with accelerator.split_between_processes(list(items)) as mine:
        results = work(mine)
    return gather_object(results)
