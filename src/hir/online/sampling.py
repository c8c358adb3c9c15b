"""The online phase: sample outputs for training queries under the target instruction, drop
duplicates of the same query, and score each with the task's feedback function."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from hir.models import Policy
from hir.tasks.base import Example, Task


@dataclass(frozen=True)
class Sample:
    iteration: int
    query_id: str
    instruction: str
    output: str
    score: float
    # The output's token ids as sampled, up to and including EOS (PPO scores these); None for
    # outputs that were not sampled by the policy, or buffers written before they were kept.
    token_ids: tuple[int, ...] | None = None
    # The answer the task's extractor took from `output` (what the feedback scored); the model
    # trains on `output`, the raw text it sampled.
    answer: str | None = None

    def to_dict(self) -> dict:
        record = asdict(self)
        for optional in ("token_ids", "answer"):
            if record[optional] is None:
                del record[optional]
        return record

    @classmethod
    def from_dict(cls, record: dict) -> Sample:
        ids = record.get("token_ids")
        return cls(**{**record, "token_ids": tuple(ids) if ids is not None else None})


def sample_outputs(
    policy: Policy,
    task: Task,
    examples: list[Example],
    *,
    instruction: str,
    iteration: int,
    num_samples: int = 4,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    max_new_tokens: int = 32,
    batch_size: int = 64,
    progress: str | None = None,
) -> list[Sample]:
    """`num_samples` outputs per example at `temperature`, many queries per generate call.
    Duplicates of the same query are dropped, keeping first-seen order (the public code uses a
    set, whose order varies between runs)."""
    task = task.for_format(policy.chat)
    prompts = [task.prompt(example.query, instruction) for example in examples]
    outputs = policy.generate(
        prompts,
        num_samples=num_samples,
        do_sample=True,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        progress=progress,
        return_token_ids=True,
    )
    kept = []  # (prompt, example, output, token ids)
    for prompt, example, candidates in zip(prompts, examples, outputs):
        # Duplicates are judged by text; the first sampled token ids of each text are kept.
        first_seen: dict[str, tuple[int, ...]] = {}
        for output, token_ids in candidates:
            first_seen.setdefault(output, token_ids)
        kept += [(prompt, example, output, ids) for output, ids in first_seen.items()]
    scored = task.score_outputs([k[0] for k in kept], [k[2] for k in kept], [k[1] for k in kept])
    return [Sample(iteration, example.id, instruction, output, score, token_ids, answer)
            for (_, example, output, token_ids), (answer, score) in zip(kept, scored)]  # fmt: skip
