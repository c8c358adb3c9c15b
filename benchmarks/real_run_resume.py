"""An end-to-end HIR run with LoRA on a real pretrained model (default: SmolLM2-135M-Instruct on
logical_deduction_three_objects), run twice through the `hir train` command: once unbroken,
once killed with SIGKILL during its second iteration and resumed with `--resume`. Prints the
metrics of every iteration, and whether the resumed run's buffer is byte-identical and its
accuracies equal to the unbroken run's. Both runs use the same torch thread count
(OMP_NUM_THREADS), so their float sums are the same.

    python benchmarks/real_run_resume.py --bigbench_dir ../shared/bigbench
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from _common import print_table


def train_command(args, output_dir: Path) -> list[str]:
    command = [sys.executable, "-m", "hir", "train", "--method", "hir", "--model", args.model,
               "--task", f"bigbench/{args.task}", "--output_dir", str(output_dir),
               "--lora_r", "8", "--train_last_layers", "4", "--iterations", str(args.iterations),
               "--max_queries_per_iteration", str(args.queries), "--num_samples", "4",
               "--max_new_tokens", "32", "--batch_size", "16", "--learning_rate", "3e-4",
               "--epochs_per_iteration", "2",
               "--group_by_query", "true", "--report_to", "tensorboard", "--seed", "0"]  # fmt: skip
    if args.bigbench_dir:
        command += ["--bigbench_dir", args.bigbench_dir]
    return command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--task", default="logical_deduction_three_objects")
    parser.add_argument("--bigbench_dir", default=None)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--queries", type=int, default=16)
    parser.add_argument("--output_dir", default="results/smollm2-lora-hir")
    parser.add_argument("--kill_after", type=float, default=30.0,
                        help="seconds into iteration 2 at which the second run is killed")  # fmt: skip
    args = parser.parse_args(argv)
    root = Path(args.output_dir)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    whole, broken = root / "unbroken", root / "killed-and-resumed"
    if not (whole / "summary.json").is_file():
        shutil.rmtree(whole, ignore_errors=True)
        subprocess.run(train_command(args, whole), check=True, env=env)
    if not (broken / "summary.json").is_file():
        shutil.rmtree(broken, ignore_errors=True)
        process = subprocess.Popen(train_command(args, broken), env=env)
        first = broken / "checkpoints" / "iteration-0001" / "COMPLETE.json"
        while not first.is_file() and process.poll() is None:
            time.sleep(0.5)
        time.sleep(args.kill_after)
        if process.poll() is not None:
            raise SystemExit("the run ended before it could be killed: lower --kill_after")
        process.send_signal(signal.SIGKILL)
        process.wait()
        print(f"killed {args.kill_after:.0f}s into iteration 2", file=sys.stderr)
        subprocess.run(train_command(args, broken) + ["--resume", "true"], check=True, env=env)
    history = [json.loads(line) for line in (whole / "metrics.jsonl").read_text().splitlines()]
    resumed = [json.loads(line) for line in (broken / "metrics.jsonl").read_text().splitlines()]
    columns = ["iteration", "accuracy", "sample_accuracy", "well_formed", "relabeled_target_share",
               "loss", "loss_contrastive", "entropy", "wall_seconds"]  # fmt: skip
    print_table(f"HIR, LoRA r=8 on the last 4 layers: {args.model} on {args.task} (test split)",
                columns, [[row.get(c, "") for c in columns] for row in history])  # fmt: skip
    same_buffer = (whole / "buffer.jsonl").read_bytes() == (broken / "buffer.jsonl").read_bytes()
    same_accuracy = [r["accuracy"] for r in history] == [r["accuracy"] for r in resumed]
    result = {"buffer byte-identical": same_buffer, "accuracies equal": same_accuracy,
              "accuracies": [r["accuracy"] for r in history],
              "resumed accuracies": [r["accuracy"] for r in resumed]}  # fmt: skip
    (root / "resume_check.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if same_buffer and same_accuracy else 1


if __name__ == "__main__":
    raise SystemExit(main())
