"""Where a run's numbers go: one console line per iteration, `metrics.jsonl` (one record per
iteration, rewritten atomically so that it always matches the checkpoints), `config.json`
(config and library versions) and accelerate's trackers (TensorBoard, W&B, MLflow...)."""

from __future__ import annotations

from pathlib import Path

from accelerate import Accelerator

from hir.runs.fileio import atomic_write_json, atomic_write_jsonl
from hir.runs.folders import RunFolder
from hir.runs.versions import library_versions

_CONSOLE = [
    ("accuracy", "acc {:.3f}"),
    ("sample_accuracy", "samples: acc {:.3f}"),
    ("sample_well_formed", "well-formed {:.2f}"),
    ("unique_samples_per_query", "unique/query {:.2f}"),
    ("buffer_size", "buffer {}"),
    ("loss", "loss {:.3f}"),
    ("loss_sft", "(ce {:.3f}"),
    ("loss_contrastive", "con {:.3f}"),
    ("entropy", "ent {:.3f})"),
    ("wall_seconds", "{:.0f}s"),
]


TRACKERS = ("none", "tensorboard", "wandb", "mlflow", "comet_ml", "aim", "clearml", "dvclive",
            "trackio", "all")  # fmt: skip


def unknown_trackers(report_to: str) -> list[str]:
    return [name for name in parse_report_to(report_to) if name not in TRACKERS]


def parse_report_to(report_to: str) -> list[str]:
    names = [n.strip() for n in report_to.split(",") if n.strip()]
    return [] if names in ([], ["none"]) else names


class RunLogger:
    def __init__(
        self,
        accelerator: Accelerator,
        output_dir: Path,
        config: dict,
        history: list[dict],
        run_id: str | None = None,
    ) -> None:
        """`run_id`: the run's identity, recorded beside its config (`hir.runs.checkpoint`)."""
        self.accelerator = accelerator
        self.files = RunFolder(output_dir)
        self.history = history
        self.writes_files = accelerator.is_main_process
        if self.writes_files:
            record = {"config": config, "run_id": run_id, "versions": library_versions()}
            atomic_write_json(self.files.config, record)
            atomic_write_jsonl(self.files.metrics, history)
        if accelerator.log_with:
            flat = {
                k: v if isinstance(v, (int, float, str, bool)) else str(v)
                for k, v in config.items()
            }
            # A resumed run redoes the iterations after its checkpoint: TensorBoard hides what
            # the killed run logged from there on, so that no iteration shows twice.
            resumed_at = history[-1]["iteration"] + 1 if history else 0
            accelerator.init_trackers("hir", config=flat,
                                      init_kwargs={"tensorboard": {"purge_step": resumed_at}})  # fmt: skip

    def log(self, record: dict) -> None:
        if self.writes_files:
            atomic_write_jsonl(self.files.metrics, self.history)
        scalars = {
            k: v for k, v in record.items() if isinstance(v, (int, float)) and k != "iteration"
        }
        if self.accelerator.log_with:
            self.accelerator.log(scalars, step=record["iteration"])
        parts = [f"iteration {record['iteration']:>3}"]
        parts += [fmt.format(record[key]) for key, fmt in _CONSOLE if key in record]
        self.accelerator.print("  ".join(parts))
        for example in record.get("examples", []):
            self.accelerator.print(
                f"    sample: {example['output']!r} (score {example['score']:g})"
            )

    def close(self) -> None:
        if self.accelerator.log_with:
            self.accelerator.end_training()
