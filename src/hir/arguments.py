"""What a run trains and on which data, given once: `ModelArguments` (the starting policy) and
`TaskArguments` (the task and how to read it). Every command fills them from the same flags
(`--task`, `--bigbench_dir`, `--split_seed`, ... ; `--model`), and a YAML `--config` may hold
their keys next to a method's config fields. Python callers may skip them and pass a model and a
task to a trainer directly."""

from __future__ import annotations

from dataclasses import dataclass, field

from hir.tasks import Task, load_task


def _help(text: str) -> dict:
    return {"help": text}


@dataclass
class ModelArguments:
    model: str = field(
        default="", metadata=_help("Hub model id or local folder of the starting policy")
    )


@dataclass
class TaskArguments:
    task: str = field(
        default="synthetic/count", metadata=_help("task name, jsonl:<file> or hf:<dataset>")
    )
    bigbench_dir: str | None = field(
        default=None,
        metadata=_help("folder with BIG-bench <task>/task.json (default: $HIR_BIGBENCH_DIR, else download once)"),
    )  # fmt: skip
    no_download: bool = field(default=False, metadata=_help("never download BIG-bench data"))
    feedback: str | None = field(
        default=None,
        metadata=_help("feedback module:function or file.py:function, (output, example) -> float"),
    )
    query_field: str = field(default="query", metadata=_help("query column of user data"))
    answer_field: str = field(default="answer", metadata=_help("answer column of user data"))
    hf_split: str = field(
        default="train", metadata=_help("split of a Hugging Face dataset to read")
    )
    num_examples: int = field(default=1000, metadata=_help("size of a synthetic task"))
    data_seed: int = field(default=0, metadata=_help("seed of a synthetic task's generator"))
    split_seed: int | None = field(
        default=None, metadata=_help("seed of the train/test permutation (protocol: 1)")
    )
    validation_fraction: float | None = field(
        default=None, metadata=_help("share of train held out for validation")
    )

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
        )
