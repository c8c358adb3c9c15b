"""Named points at which the kill-and-resume tests make a real `hir` process die.

`HIR_CRASH_AT=NAME` (or `NAME:N`, the N-th time it is reached) sends the process SIGKILL at
that point: no cleanup, no `finally`, as when the machine loses power or the OOM killer
strikes. `HIR_CRASH_SIGNAL=TERM` sends SIGTERM instead, as a scheduler stopping a job does. Unset (always, outside the tests), `crash_point` does nothing but read a variable.

Points: sampling (between scoring and adding to the buffer), training (after an optimizer
step), evaluation (after the greedy outputs, before the metrics), logging (metrics written,
no checkpoint yet), checkpoint_staging (files staged, not yet verified), checkpoint_pruning
(the new checkpoint in place, the old ones not yet removed), staged (a folder command's
staging folder written, not yet renamed into place: `hir.runs.staging`).
"""

from __future__ import annotations

import os
import signal
from collections import Counter

_reached: Counter[str] = Counter()


def crash_point(name: str) -> None:
    spec = os.environ.get("HIR_CRASH_AT")
    if not spec:
        return
    target, _, nth = spec.partition(":")
    if target != name:
        return
    _reached[name] += 1
    if _reached[name] == int(nth or 1):
        kind = os.environ.get("HIR_CRASH_SIGNAL", "KILL")
        os.kill(os.getpid(), signal.SIGTERM if kind == "TERM" else signal.SIGKILL)
