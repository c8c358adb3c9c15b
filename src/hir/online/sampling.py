"""The online phase: sample outputs for training queries under the target instruction, drop
duplicates of the same query, and score each with the task's feedback function (or, where a
reward model drives training, with the reward, keeping the task's score beside it)."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field

from hir.models import Policy
from hir.options import flag_help
from hir.tasks.base import Example, Task
from hir.tasks.feedback import Feedback


@dataclass
class SamplingSettings:
    """How outputs are sampled, declared once: every sampling method's config
    (`hir.trainers.run_config.SamplingConfig`) and `hir screen`'s settings are these."""

    num_samples: int = field(default=4, metadata=flag_help("samples per query (paper: 4; the screen's k of pass@k)"))  # fmt: skip
    temperature: float = field(default=1.0, metadata=flag_help("sampling temperature (paper: 1.0)"))
    top_k: int = field(default=0, metadata=flag_help("top-k sampling; 0 = off (pure sampling)"))
    top_p: float = field(default=1.0, metadata=flag_help("nucleus sampling; 1.0 = off"))

    def sampling_checks(self) -> list[tuple[bool, str]]:
        """(condition, message) pairs for the settings above."""
        return [
            (self.num_samples >= 1, "num_samples must be >= 1"),
            (self.temperature > 0, "temperature must be > 0"),
            (self.top_k >= 0, "top_k must be >= 0 (0 = off)"),
            (0 < self.top_p <= 1, "top_p must be in (0, 1]"),
        ]


@dataclass(frozen=True)
class Sample:
    iteration: int
    query_id: str
    instruction: str
    output: str
    # The feedback's (or the reward's) score; None for a sample left unscored by a feedback
    # budget (HIR's learned relabeler relabels it).
    score: float | None
    # The output's token ids as sampled, up to and including EOS (PPO scores these); None for
    # outputs that were not sampled by the policy, or buffers written before they were kept.
    token_ids: tuple[int, ...] | None = None
    # The answer the task's extractor took from `output` (what the feedback scored); the model
    # trains on `output`, the raw text it sampled.
    answer: str | None = None
    # Where a reward (model) scored `score`: the task's feedback on the same output, for the
    # accuracy of the samples; None where the task's feedback is `score` itself.
    task_score: float | None = None

    @property
    def feedback_score(self) -> float | None:
        """The task's feedback on this output (None: not scored)."""
        return self.score if self.task_score is None else self.task_score

    def to_dict(self) -> dict:
        record = asdict(self)
        for optional in ("token_ids", "answer", "task_score"):
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
    reward: Feedback | None = None,
    feedback_share: float = 1.0,
    seed: int = 0,
    keep_duplicates: bool = False,
) -> list[Sample]:
    """`num_samples` outputs per example at `temperature`, many queries per generate call.
    Duplicates of the same query are dropped, keeping first-seen order (the public code uses a
    set, whose order varies between runs), unless `keep_duplicates` (GRPO's groups: every one of
    a query's samples counts in its group's mean and std, as TRL's). `reward`: scores the samples instead of the task's
    feedback (which fills `task_score`). `feedback_share` < 1 scores only that share of the
    samples, drawn by `is_scored` (the same whatever process samples a query); the others keep
    their extracted answer and score None."""
    task = task.for_format(policy.chat)
    # Each example under its own instruction where it has one (Task.instruction_for).
    asked = [task.instruction_for(example, instruction) for example in examples]
    prompts = [task.prompt(example.query, own) for example, own in zip(examples, asked)]
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
    asked_by_id = {example.id: own for example, own in zip(examples, asked)}
    kept = []  # (prompt, example, output, token ids)
    for prompt, example, candidates in zip(prompts, examples, outputs):
        # Duplicates are judged by text; the first sampled token ids of each text are kept.
        if keep_duplicates:
            kept += [(prompt, example, output, ids) for output, ids in candidates]
            continue
        first_seen: dict[str, tuple[int, ...]] = {}
        for output, token_ids in candidates:
            first_seen.setdefault(output, token_ids)
        kept += [(prompt, example, output, ids) for output, ids in first_seen.items()]
    chosen = [i for i, (_, example, output, _) in enumerate(kept)
              if is_scored(feedback_share, seed, iteration, example.id, output)]  # fmt: skip
    answers: list[str | None] = [None] * len(kept)
    scores: list[float | None] = [None] * len(kept)
    task_scores: list[float | None] = [None] * len(kept)
    if chosen:
        prompts, outputs, examples = ([kept[i][k] for i in chosen] for k in (0, 2, 1))
        judged = task.score_outputs(prompts, outputs, examples)  # (answer, score) each
        feedback = [score for _, score in judged]
        rewards = feedback if reward is None else reward(prompts, outputs, [a for a, _ in judged], examples)  # fmt: skip
        for i, (answer, task_score), score in zip(chosen, judged, rewards):
            answers[i], scores[i] = answer, score
            task_scores[i] = None if reward is None else task_score
    for i, (_, example, output, _) in enumerate(kept):  # the unscored: their answers only
        if answers[i] is None:
            answers[i] = task.extract(output, example)
    return [Sample(iteration, example.id, asked_by_id[example.id], output, score, token_ids, answer,
                   task_score)
            for (_, example, output, token_ids), answer, score, task_score
            in zip(kept, answers, scores, task_scores)]  # fmt: skip


def is_scored(share: float, seed: int, iteration: int, query_id: str, output: str) -> bool:
    """Whether a sample falls in the scored `share`: a draw seeded by the run's seed and the
    sample itself, so that it is the same on any process and after a resume."""
    if share >= 1.0:
        return True
    return random.Random(f"{seed}:{iteration}:{query_id}:{output}").random() < share
