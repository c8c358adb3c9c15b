"""The replay buffer: every scored sample, persisted on disk as JSONL (one record per sample),
rewritten atomically, with a retention policy:

- "all":        keep every sample ever drawn
- "latest:K":   keep the samples of the K most recent iterations
- "cap:M":      keep the M x (number of training queries) most recent samples (the public code
                trains on at most 4 x N_train samples of its growing file; it picks them at
                random, here the newest are kept)
"""

from __future__ import annotations

from pathlib import Path

from hir.errors import HIRError
from hir.online.sampling import Sample
from hir.runs.fileio import atomic_write_jsonl, read_jsonl


def parse_retention(policy: str) -> tuple[str, int]:
    kind, _, value = policy.partition(":")
    if kind == "all" and not value:
        return kind, 0
    if kind in ("latest", "cap") and value.isdigit() and int(value) > 0:
        return kind, int(value)
    raise HIRError(
        f"buffer retention {policy!r} is not one of: all, latest:K, cap:M (K, M positive integers)"
    )


class ReplayBuffer:
    def __init__(
        self, path: str | Path, retention: str = "all", train_size: int = 0, persist: bool = True
    ) -> None:
        self.path = Path(path)
        self.persist = persist  # False: memory only (the processes other than the main one)
        self.retention = parse_retention(retention)
        self.train_size = train_size
        self.samples: list[Sample] = []

    def __len__(self) -> int:
        return len(self.samples)

    def add(self, samples: list[Sample]) -> None:
        self.samples = retain(self.samples + samples, *self.retention, train_size=self.train_size)
        self.save()

    def save(self, path: str | Path | None = None) -> None:
        if self.persist:
            atomic_write_jsonl(path or self.path, (s.to_dict() for s in self.samples))

    def load(self, path: str | Path | None = None) -> None:
        self.samples = [Sample.from_dict(record) for record in read_jsonl(path or self.path)]


def retain(samples: list[Sample], kind: str, value: int, train_size: int) -> list[Sample]:
    if kind == "latest" and samples:
        newest = max(s.iteration for s in samples)
        return [s for s in samples if s.iteration > newest - value]
    if kind == "cap":
        limit = value * max(train_size, 1)
        return samples[-limit:]
    return samples
