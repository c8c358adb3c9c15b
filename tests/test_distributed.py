"""Several processes (accelerate, data parallel): each samples and evaluates a share of the
queries, all train on every sample, one writes the files. Two CPU processes (gloo), started by
torchrun as fresh interpreters (forking a process whose thread pools already ran can hang)."""

import json
import subprocess
import sys
from pathlib import Path

from hir.models import load_policy
from hir.online.evaluate import evaluate
from hir.tasks import load_task
from hir.trainers.hir import HIRConfig, HIRTrainer

SETTINGS = dict(iterations=1, epochs_per_iteration=1, batch_size=8, max_new_tokens=4, num_samples=3,
                report_to="none", seed=0, device="cpu")  # fmt: skip


def _train(model_dir: str, output_dir: str) -> None:
    task = load_task("synthetic/sort", num_examples=40)
    trainer = HIRTrainer(model_dir, task, HIRConfig(output_dir=output_dir, **SETTINGS))
    rank, world = trainer.accelerator.process_index, trainer.accelerator.num_processes
    (Path(output_dir) / f"process-{rank}-of-{world}").touch()
    trainer.train()


def test_two_processes_share_out_sampling_and_evaluation(tiny_gpt2_dir, tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               __file__, tiny_gpt2_dir, str(tmp_path)]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.glob("process-*")) == [
        "process-0-of-2",
        "process-1-of-2",
    ]

    task = load_task("synthetic/sort", num_examples=40)
    train_ids = [e.id for e in task.split("train")]
    samples = [json.loads(line) for line in (tmp_path / "buffer.jsonl").read_text().splitlines()]
    # Every training query was sampled, by one process only: at most 3 distinct outputs each.
    assert {s["query_id"] for s in samples} == set(train_ids)
    for query_id in train_ids:
        outputs = [s["output"] for s in samples if s["query_id"] == query_id]
        assert 1 <= len(outputs) <= 3 and len(set(outputs)) == len(outputs)
    # One writer: the metrics file holds each iteration once.
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["iteration"] for m in metrics] == [0, 1]
    # Evaluation, shared out and gathered, scores the start policy as one process does.
    alone = evaluate(load_policy(tiny_gpt2_dir), task, max_new_tokens=4, batch_size=64)
    assert metrics[0]["accuracy"] == alone.accuracy
    assert (tmp_path / "summary.json").is_file()
    assert (tmp_path / "checkpoints").is_dir()


if __name__ == "__main__":  # one of torchrun's processes
    _train(sys.argv[1], sys.argv[2])
