"""The settings every method shares, in three pieces that each method's config combines:

- `RunConfig`: run folder, seed, iterations, optimizer, evaluation, infrastructure (every method);
- `SamplingConfig(RunConfig)`: the online sampling phase (HIR, FARL, PPO; not SFT);
- `SupervisedFields`: epochs of supervised training per iteration (HIR, FARL, SFT; not PPO).

A config is filled from Python, from `--config run.yaml` and from flags (one per field); every
field is checked on construction, so a bad value fails before anything runs.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields

import torch

from hir.errors import HIRError
from hir.online.sampling import SamplingSettings
from hir.options import flag_help
from hir.runs.tracking import TRACKERS, unknown_trackers


@dataclass
class RunConfig:
    output_dir: str = field(
        default="runs/hir", metadata=flag_help("folder for checkpoints, logs and summary.json")
    )
    seed: int = field(default=0, metadata=flag_help("seeds sampling, shuffling and initialisation"))
    iterations: int = field(
        default=10, metadata=flag_help("rounds of (sample ->) train -> evaluate")
    )
    correct_instruction: str | None = field(
        default=None,
        metadata=flag_help(
            "the target instruction sampled and evaluated under (default: the task's)"
        ),
    )
    success_threshold: float = field(
        default=1.0,
        metadata=flag_help("a score at least this counts as correct, everywhere: accuracy, sample "
                       "accuracy, FARL's filter, HIR's binary relabel"),
    )  # fmt: skip

    # The optimizer.
    learning_rate: float = field(
        default=5e-4, metadata=flag_help("AdamW learning rate (paper: 5e-4)")
    )
    weight_decay: float = field(default=0.0, metadata=flag_help("AdamW weight decay"))
    lr_scheduler: str = field(
        default="constant",
        metadata=flag_help("constant | constant_with_warmup (which needs warmup_steps > 0)"),
    )
    warmup_steps: int = field(
        default=0, metadata=flag_help("optimizer steps of linear warmup (constant_with_warmup)")
    )
    batch_size: int = field(
        default=64,
        metadata=flag_help("examples per micro-batch (paper: 64); an optimizer step takes "
                       "gradient_accumulation_steps of them"),
    )  # fmt: skip
    gradient_accumulation_steps: int = field(
        default=1, metadata=flag_help("micro-batches per optimizer step")
    )
    max_grad_norm: float = field(default=1.0, metadata=flag_help("gradient clipping; 0 = off"))

    # Evaluation.
    max_new_tokens: int = field(default=32, metadata=flag_help("longest output, sampled or greedy"))
    eval_split: str = field(default="test", metadata=flag_help("split evaluated (see eval_every)"))
    eval_every: int = field(
        default=1,
        metadata=flag_help(
            "evaluate after every N-th iteration (the start and the last iteration "
            "always); the iterations between log their training metrics only"
        ),
    )
    eval_batch_size: int = field(default=64, metadata=flag_help("queries per greedy generate call"))
    eval_limit: int | None = field(
        default=None,
        metadata=flag_help("evaluate only the first N examples (time in proportion; accuracy's noise ~0.5/sqrt(N))"),
    )  # fmt: skip

    # Infrastructure.
    device: str = field(default="auto", metadata=flag_help("auto | cpu | cuda"))
    mixed_precision: str = field(
        default="auto", metadata=flag_help("auto (bf16 on a capable GPU) | no | bf16 | fp16")
    )
    report_to: str = field(
        default="tensorboard",
        metadata=flag_help("comma-separated: tensorboard, wandb, mlflow, none"),
    )
    keep_checkpoints: int = field(
        default=2, metadata=flag_help("how many iteration checkpoints to keep")
    )
    resume: bool = field(
        default=False, metadata=flag_help("continue from the last checkpoint in output_dir")
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata=flag_help("start over in an output_dir that holds another run's checkpoints"),
    )
    log_samples: int = field(
        default=4, metadata=flag_help("sampled outputs shown in the log per iteration")
    )

    def __post_init__(self) -> None:
        check_field_types(self)
        for ok, message in self.checks():
            if not ok:
                raise HIRError(f"bad config: {message}")

    def checks(self) -> list[tuple[bool, str]]:
        """(condition, message) pairs; a subclass adds its own to `super().checks()`."""
        return [
            (self.iterations >= 0, "iterations must be >= 0"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.gradient_accumulation_steps >= 1, "gradient_accumulation_steps must be >= 1"),
            (self.learning_rate > 0, "learning_rate must be > 0"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (self.max_grad_norm >= 0, "max_grad_norm must be >= 0 (0 = off)"),
            (self.max_new_tokens >= 1, "max_new_tokens must be >= 1"),
            (self.eval_batch_size >= 1, "eval_batch_size must be >= 1"),
            (self.eval_limit is None or self.eval_limit >= 1, "eval_limit must be >= 1"),
            (self.eval_every >= 1, "eval_every must be >= 1 (1 evaluates after every iteration)"),
            (0 <= self.success_threshold <= 1, "success_threshold must be in [0, 1]"),
            (
                self.lr_scheduler in ("constant", "constant_with_warmup"),
                "lr_scheduler must be constant or constant_with_warmup",
            ),
            (
                self.warmup_steps == 0 or self.lr_scheduler == "constant_with_warmup",
                "warmup_steps needs --lr_scheduler constant_with_warmup (constant ignores it)",
            ),
            (self.warmup_steps >= 0, "warmup_steps must be >= 0"),
            (
                self.mixed_precision in ("auto", "no", "bf16", "fp16"),
                "mixed_precision must be auto, no, bf16 or fp16",
            ),
            (
                self.eval_split in ("train", "validation", "test"),
                "eval_split must be train, validation or test",
            ),
            (self.keep_checkpoints >= 1, "keep_checkpoints must be >= 1"),
            (0 <= self.seed < 2**32, f"seed must be in [0, 2**32) (numpy's range), got {self.seed}"),
            (not (self.resume and self.overwrite_output_dir),
             "resume and overwrite_output_dir exclude each other: choose one"),
            (not unknown_trackers(self.report_to),
             f"report_to names unknown trackers {unknown_trackers(self.report_to)}: use a "
             f"comma-separated list of {', '.join(TRACKERS)}"),
            (re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps|xpu", self.device) is not None,
             f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}"),
            (not self.device.startswith("cuda") or torch.cuda.is_available(),
             f"device {self.device} was asked for, but torch sees no CUDA GPU here; use "
             "--device cpu (or auto)"),
        ]  # fmt: skip

    def to_dict(self) -> dict:
        return asdict(self)

    def run_settings(self) -> dict:
        """The `RunConfig` part of this config (what every method has): to start another
        method's config from, e.g. the InstructGPT pipeline's SFT stage from its PPO config."""
        return {f.name: getattr(self, f.name) for f in fields(RunConfig)}


@dataclass
class SamplingConfig(RunConfig, SamplingSettings):
    """A run that samples each iteration: `SamplingSettings` (num_samples, temperature, top_k,
    top_p) and what is sampled for and kept."""

    max_queries_per_iteration: int | None = field(
        default=None,
        metadata=flag_help("sample for a random subset of this many training queries per round"),
    )
    sampling_batch_size: int = field(default=64, metadata=flag_help("queries per generate call"))
    buffer_retention: str = field(
        default="cap:4", metadata=flag_help("all | latest:K | cap:M (x train size)")
    )
    reward_model: str | None = field(
        default=None,
        metadata=flag_help("a reward-model folder (`hir instructgpt`'s reward_model/, or a "
                           "sequence-classification model with one output) whose scores drive "
                           "training instead of the task's feedback: HIR's relabeling, FARL's "
                           "filter, PPO's reward; accuracy stays the task's"),
    )  # fmt: skip

    def checks(self) -> list[tuple[bool, str]]:
        return (
            super().checks()
            + self.sampling_checks()
            + [
                (self.sampling_batch_size >= 1, "sampling_batch_size must be >= 1"),
                (
                    self.max_queries_per_iteration is None or self.max_queries_per_iteration >= 1,
                    "max_queries_per_iteration must be >= 1",
                ),
            ]
        )


@dataclass
class SupervisedFields:
    """Mixed into the configs of the methods that train with supervised epochs."""

    epochs_per_iteration: int = field(
        default=10, metadata=flag_help("training epochs per iteration (paper: 10)")
    )
    label_smoothing: float = field(
        default=0.2, metadata=flag_help("label smoothing of the CE term (paper: 0.2)")
    )
    group_by_query: bool = field(
        default=False,
        metadata=flag_help("batch a query's samples together, so its prompt runs once for all of "
                       "them (faster training; batches then hold fewer distinct queries)"),
    )  # fmt: skip
    balance_answers: bool = field(
        default=False,
        metadata=flag_help("weight the cross-entropy so that, within each instruction, every "
                           "distinct answer's items count equally (default off: every item "
                           "counts once); against learning the answer most right samples give"),
    )  # fmt: skip

    def checks(self) -> list[tuple[bool, str]]:
        return super().checks() + [  # type: ignore[misc]
            (self.epochs_per_iteration >= 1, "epochs_per_iteration must be >= 1"),
            (0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)"),
        ]


_TYPES = {"int": int, "float": (int, float), "str": str, "bool": bool}


def check_field_types(config) -> None:
    """Every field holds a value of its declared type (YAML `iterations: 1.5` or `seed: "x"`
    fail here, not after an iteration has run)."""
    # The annotations as written (HfArgumentParser rewrites `Field.type` in place, dropping
    # `| None`), as strings under `from __future__ import annotations`.
    annotations = {}
    for cls in reversed(type(config).__mro__):
        annotations.update(getattr(cls, "__annotations__", {}))
    for f in fields(config):
        value = getattr(config, f.name)
        kinds = [k.strip() for k in str(annotations[f.name]).split("|")]
        if value is None and "None" in kinds:
            continue
        expected = tuple(t for k in kinds if k in _TYPES for t in _flat(_TYPES[k]))
        if not expected:
            continue
        wrong = not isinstance(value, expected) or (
            bool not in expected and isinstance(value, bool)
        )
        if isinstance(value, float) and not math.isfinite(value):
            wrong = True
        if wrong:
            raise HIRError(
                f"bad config: {f.name} must be {' or '.join(kinds)}, got {type(value).__name__} {value!r}"
            )


def _flat(kind) -> tuple:
    return kind if isinstance(kind, tuple) else (kind,)
