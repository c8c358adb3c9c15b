"""HIRConfig: every knob of a HIR run, with the paper's defaults. The same dataclass is filled
from Python, from `hir train --config run.yaml` and from command-line flags (one per field)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from hir.errors import HIRError


def _help(text: str) -> dict:
    return {"help": text}


@dataclass
class HIRConfig:
    """Hindsight Instruction Relabeling (Zhang et al., 2023).

    Each iteration samples `num_samples` outputs per training query at `temperature` under the
    target instruction, scores them, adds them to the replay buffer, relabels every buffered
    sample with the instruction it satisfies, trains `epochs_per_iteration` epochs on
    L = CE(label smoothing) + contrastive_weight * contrastive - entropy_weight * entropy,
    and evaluates greedy accuracy under the target instruction.
    """

    # What to train on what.
    model: str = field(
        default="", metadata=_help("Hub model id or local folder of the starting policy")
    )
    task: str = field(
        default="synthetic/count", metadata=_help("task name, jsonl:<file> or hf:<dataset>")
    )
    output_dir: str = field(
        default="runs/hir", metadata=_help("folder for checkpoints, logs and summary.json")
    )
    seed: int = field(default=0, metadata=_help("seeds sampling, shuffling and initialisation"))

    # Task data.
    bigbench_dir: str | None = field(
        default=None, metadata=_help("folder with BIG-bench <task>/task.json")
    )
    num_examples: int = field(default=1000, metadata=_help("size of a synthetic task"))
    data_seed: int = field(default=0, metadata=_help("seed of a synthetic task's generator"))
    feedback: str | None = field(
        default=None, metadata=_help("feedback module:function replacing the task's")
    )
    query_field: str = field(default="query", metadata=_help("query column of user data"))
    answer_field: str = field(default="answer", metadata=_help("answer column of user data"))
    validation_fraction: float = field(
        default=0.0, metadata=_help("share of train held out for validation")
    )

    # The outer loop.
    iterations: int = field(
        default=10, metadata=_help("sample -> relabel -> train -> evaluate rounds")
    )
    epochs_per_iteration: int = field(
        default=10, metadata=_help("training epochs over the buffer per round (paper: 10)")
    )
    max_queries_per_iteration: int | None = field(
        default=None,
        metadata=_help("sample for a random subset of this many training queries per round"),
    )

    # Online sampling.
    num_samples: int = field(default=4, metadata=_help("samples per query (paper: 4)"))
    temperature: float = field(default=1.0, metadata=_help("sampling temperature (paper: 1.0)"))
    top_k: int = field(default=0, metadata=_help("top-k sampling; 0 = off (pure sampling)"))
    top_p: float = field(default=1.0, metadata=_help("nucleus sampling; 1.0 = off"))
    max_new_tokens: int = field(default=32, metadata=_help("longest output"))
    sampling_batch_size: int = field(default=64, metadata=_help("queries per generate call"))
    buffer_retention: str = field(
        default="cap:4", metadata=_help("all | latest:K | cap:M (x train size)")
    )

    # Relabeling.
    relabel: str = field(default="binary", metadata=_help("binary | quantile | module:function"))
    correct_instruction: str | None = field(
        default=None, metadata=_help("default: the task's correct-answer instruction")
    )
    wrong_instruction: str | None = field(
        default=None, metadata=_help("default: the task's wrong-answer instruction")
    )
    success_threshold: float = field(
        default=1.0, metadata=_help("binary relabel: score that counts as correct")
    )
    num_buckets: int = field(default=4, metadata=_help("quantile relabel: number of score buckets"))

    # The loss.
    learning_rate: float = field(default=5e-4, metadata=_help("AdamW learning rate (paper: 5e-4)"))
    weight_decay: float = field(default=0.0, metadata=_help("AdamW weight decay"))
    lr_scheduler: str = field(default="constant", metadata=_help("constant | constant_with_warmup"))
    warmup_steps: int = field(default=0, metadata=_help("learning-rate warmup steps"))
    batch_size: int = field(
        default=64,
        metadata=_help(
            "examples per micro-batch (paper: 64); an optimizer step takes gradient_accumulation_steps of them"
        ),
    )
    gradient_accumulation_steps: int = field(
        default=1, metadata=_help("micro-batches per optimizer step")
    )
    max_grad_norm: float = field(default=1.0, metadata=_help("gradient clipping; 0 = off"))
    group_by_query: bool = field(
        default=False,
        metadata=_help(
            "batch a query's samples together, so its prompt runs once for all of them (faster "
            "training; batches then hold fewer distinct queries)"
        ),
    )
    label_smoothing: float = field(
        default=0.2, metadata=_help("label smoothing of the CE term (paper: 0.2)")
    )
    contrastive_weight: float = field(
        default=1.0, metadata=_help("alpha (paper: 1); 0 = no contrastive term")
    )
    contrastive_form: str = field(
        default="pairwise", metadata=_help("pairwise (public code) | in_batch (paper's equation)")
    )
    contrastive_smoothing: float = field(
        default=0.2, metadata=_help("epsilon of the pairwise form (public code: 0.2)")
    )
    entropy_weight: float = field(
        default=0.001, metadata=_help("beta (paper: 0.001); 0 = no entropy term")
    )
    sub_output_prob: float = field(
        default=0.5,
        metadata=_help(
            "share of multi-word samples trained as prefix-in-context sub-outputs; 0 = off"
        ),
    )

    # Evaluation.
    eval_split: str = field(default="test", metadata=_help("split evaluated after every iteration"))
    eval_batch_size: int = field(default=64, metadata=_help("queries per greedy generate call"))
    eval_limit: int | None = field(
        default=None, metadata=_help("evaluate only the first N examples")
    )

    # Infrastructure.
    device: str = field(default="auto", metadata=_help("auto | cpu | cuda"))
    mixed_precision: str = field(
        default="auto", metadata=_help("auto (bf16 on a capable GPU) | no | bf16 | fp16")
    )
    report_to: str = field(
        default="tensorboard", metadata=_help("comma-separated: tensorboard, wandb, mlflow, none")
    )
    keep_checkpoints: int = field(
        default=2, metadata=_help("how many iteration checkpoints to keep")
    )
    resume: bool = field(
        default=False, metadata=_help("continue from the last checkpoint in output_dir")
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata=_help("start over in an output_dir that holds another run's checkpoints"),
    )
    log_samples: int = field(
        default=4, metadata=_help("sampled outputs shown in the log per iteration")
    )

    def __post_init__(self) -> None:
        checks = [
            (self.iterations >= 0, "iterations must be >= 0"),
            (self.epochs_per_iteration >= 1, "epochs_per_iteration must be >= 1"),
            (self.num_samples >= 1, "num_samples must be >= 1"),
            (self.temperature > 0, "temperature must be > 0"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)"),
            (0 <= self.contrastive_smoothing < 1, "contrastive_smoothing must be in [0, 1)"),
            (0 <= self.sub_output_prob <= 1, "sub_output_prob must be in [0, 1]"),
            (
                self.contrastive_form in ("pairwise", "in_batch"),
                "contrastive_form must be pairwise or in_batch",
            ),
            (
                self.lr_scheduler in ("constant", "constant_with_warmup"),
                "lr_scheduler must be constant or constant_with_warmup",
            ),
            (
                self.mixed_precision in ("auto", "no", "bf16", "fp16"),
                "mixed_precision must be auto, no, bf16 or fp16",
            ),
            (
                self.eval_split in ("train", "validation", "test"),
                "eval_split must be train, validation or test",
            ),
            (self.keep_checkpoints >= 1, "keep_checkpoints must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise HIRError(f"bad config: {message}")

    def to_dict(self) -> dict:
        return asdict(self)
