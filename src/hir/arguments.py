"""What a run trains and on which data, given once: `ModelArguments` (the starting policy) and
`TaskArguments` (the task and how to read it). Every command fills them from the same flags
(`--task`, `--bigbench_dir`, `--split_seed`, ... ; `--model`), and a YAML `--config` may hold
their keys next to a method's config fields. Python callers may skip them and pass a model and a
task to a trainer directly."""

from __future__ import annotations

from dataclasses import dataclass, field

from hir.models.adapters import TrainingScope
from hir.options import flag_help
from hir.tasks import Task, load_task


@dataclass
class ModelArguments:
    model: str = field(
        default="",
        metadata=flag_help(
            "Hub id, local folder, GGUF file or built-in name of the starting policy"
        ),
    )
    prompt_format: str = field(
        default="auto",
        metadata=flag_help("auto (chat when the tokenizer has a chat template), chat or plain"),
    )
    lora_r: int = field(
        default=TrainingScope.lora_r,
        metadata=flag_help("LoRA rank; 0 trains the weights themselves"),
    )
    lora_alpha: float = field(
        default=TrainingScope.lora_alpha, metadata=flag_help("LoRA scaling numerator")
    )
    lora_dropout: float = field(
        default=TrainingScope.lora_dropout, metadata=flag_help("dropout on the LoRA input")
    )
    lora_target_modules: str = field(
        default=TrainingScope.lora_target_modules,
        metadata=flag_help("comma-separated module names (e.g. q_proj,v_proj) or all-linear"),
    )
    train_last_layers: int = field(
        default=TrainingScope.train_last_layers,
        metadata=flag_help("train only the last k transformer layers (with LoRA: adapt only them); 0: all"),
    )  # fmt: skip
    allow_new_weights: bool = field(
        default=False,
        metadata=flag_help("load a model whose folder lacks weights its config needs, initialising them afresh (refused otherwise)"),
    )  # fmt: skip
    activation_cache_mb: int = field(
        default=TrainingScope.activation_cache_mb,
        metadata=flag_help("with --train_last_layers: memory for the frozen layers' activations, computed once per sequence (0: recompute every step)"),
    )  # fmt: skip

    def training_scope(self) -> TrainingScope:
        return TrainingScope(self.lora_r, self.lora_alpha, self.lora_dropout,
                             self.lora_target_modules, self.train_last_layers,
                             self.activation_cache_mb)  # fmt: skip

    def load_policy(self, device: str | None = None):
        """The starting policy: loaded, in its prompt format, with its training scope."""
        from hir.models.loading import as_policy, load_policy

        scope = self.training_scope()  # checked before the (slow) load
        if not self.model:
            as_policy(self.model)  # raises the one "no model given" error
        policy = load_policy(self.model, device=device, prompt_format=self.prompt_format,
                             allow_new_weights=self.allow_new_weights)  # fmt: skip
        return policy.set_training_scope(scope)


@dataclass
class TaskArguments:
    task: str = field(
        default="synthetic/count", metadata=flag_help("task name, jsonl:<file> or hf:<dataset>")
    )
    bigbench_dir: str | None = field(
        default=None,
        metadata=flag_help("folder with BIG-bench <task>/task.json (default: $HIR_BIGBENCH_DIR, else download once)"),
    )  # fmt: skip
    no_download: bool = field(default=False, metadata=flag_help("never download BIG-bench data"))
    feedback: str | None = field(
        default=None,
        metadata=flag_help(
            "feedback module:function or file.py:function, (output, example) -> float"
        ),
    )
    feedback_timeout: float | None = field(
        default=None,
        metadata=flag_help("seconds one feedback call may take before the run stops and names the example"),
    )  # fmt: skip
    query_field: str = field(default="query", metadata=flag_help("query column of user data"))
    answer_field: str = field(default="answer", metadata=flag_help("answer column of user data"))
    hf_split: str = field(
        default="train", metadata=flag_help("split of a Hugging Face dataset to read")
    )
    num_examples: int = field(default=1000, metadata=flag_help("size of a synthetic task"))
    data_seed: int = field(default=0, metadata=flag_help("seed of a synthetic task's generator"))
    split_seed: int | None = field(
        default=None, metadata=flag_help("seed of the train/test permutation (protocol: 1)")
    )
    validation_fraction: float | None = field(
        default=None, metadata=flag_help("share of train held out for validation")
    )
    shuffle_options: int | None = field(
        default=None,
        metadata=flag_help("seed: permute each BIG-bench multiple-choice example's options (default: the protocol's order)"),
    )  # fmt: skip

    extract: str = field(
        default="auto",
        metadata=flag_help("answer extraction before feedback: auto, none, option, number, first_line, regex:PATTERN or module:function"),
    )  # fmt: skip
    answer_hint: str = field(
        default="auto",
        metadata=flag_help("sentence after the instruction, e.g. 'Answer with the option letter only.' (auto: the task's, for chat models; '': none)"),
    )  # fmt: skip

    def load(self) -> Task:
        return load_task(
            self.task,
            bigbench_dir=self.bigbench_dir,
            download=not self.no_download,
            feedback=self.feedback,
            query_field=self.query_field,
            answer_field=self.answer_field,
            hf_split=self.hf_split,
            num_examples=self.num_examples,
            data_seed=self.data_seed,
            split_seed=self.split_seed,
            validation_fraction=self.validation_fraction,
            extract=self.extract,
            answer_hint=self.answer_hint,
            feedback_timeout=self.feedback_timeout,
            shuffle_options=self.shuffle_options,
        )
