"""One HIR iteration on a real pretrained model (default: SmolLM2-135M-Instruct, chat template):
sampling outputs/s, training examples/s and peak RSS, for all weights trained, the last 4 layers,
and LoRA, each with and without shared prompts (`group_by_query`: rows of one prompt in one
batch, the prompt run once). Ratios are against "all weights, no sharing", measured in the
same run; each case runs in its own process so that its peak RSS is its own.

    python benchmarks/real_model.py --bigbench_dir ../shared/bigbench
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import print_table, real_model_parser, write_json

CASES = {
    "all weights": {},
    "last 4 layers": {"train_last_layers": 4},
    "LoRA r=8 (all layers)": {"lora_r": 8},
    "LoRA r=8, last 4 layers": {"lora_r": 8, "train_last_layers": 4},
}


def run_case(args) -> dict:
    import torch

    from hir.arguments import ModelArguments
    from hir.tasks import load_task
    from hir.trainers.hir import HIRConfig, HIRTrainer

    torch.manual_seed(0)
    scope = json.loads(args.case)
    policy = ModelArguments(
        model=args.model, lora_target_modules="all-linear", **scope
    ).load_policy()
    trainable = sum(p.numel() for p in policy.model.parameters() if p.requires_grad)
    task = load_task(f"bigbench/{args.task}", bigbench_dir=args.bigbench_dir)
    config = HIRConfig(
        output_dir=tempfile.mkdtemp(prefix="hir-bench-real-"), iterations=1, seed=0,
        max_queries_per_iteration=args.queries, num_samples=args.samples, max_new_tokens=args.tokens,
        batch_size=args.batch_size, epochs_per_iteration=1, eval_limit=1, report_to="none",
        group_by_query=args.shared, learning_rate=1e-5,
    )  # fmt: skip
    HIRTrainer(policy, task, config).train()
    metrics = json.loads((Path(config.output_dir) / "metrics.jsonl").read_text().splitlines()[-1])
    return {
        "trainable_parameters": trainable,
        "samples_per_second": metrics["samples_per_second"],
        "train_examples_per_second": metrics["train_examples_per_second"],
        "train_items": metrics["train_items"],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv: list[str] | None = None) -> int:
    parser = real_model_parser(__doc__, queries=16)
    parser.add_argument("--fresh", action="store_true", help="forget cases measured before")
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--shared", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case is not None:
        print("RESULT " + json.dumps(run_case(args)))
        return 0
    # Each case is appended as it finishes, and a rerun skips the cases already measured
    # (--fresh starts over): a long benchmark survives an interruption.
    partial = Path("benchmarks/results/real_model.partial.jsonl")
    if args.fresh:
        partial.unlink(missing_ok=True)
    rows = (
        [json.loads(line) for line in partial.read_text().splitlines()] if partial.is_file() else []
    )
    for name, scope in CASES.items():
        for shared in (False, True):
            if any(r["case"] == name and r["shared prompts"] == shared for r in rows):
                continue
            command = [sys.executable, __file__, "--case", json.dumps(scope), "--model", args.model,
                       "--task", args.task, "--queries", str(args.queries), "--samples", str(args.samples),
                       "--tokens", str(args.tokens), "--batch_size", str(args.batch_size)]  # fmt: skip
            if args.bigbench_dir:
                command += ["--bigbench_dir", args.bigbench_dir]
            if shared:
                command.append("--shared")
            output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            result = json.loads(output.split("RESULT ", 1)[1])
            rows.append({"case": name, "shared prompts": shared, **result})
            partial.parent.mkdir(parents=True, exist_ok=True)
            with partial.open("a") as f:
                f.write(json.dumps(rows[-1]) + "\n")
            print(f"done: {name}, shared={shared}", file=sys.stderr, flush=True)
    base = rows[0]
    for row in rows:
        row["sampling x"] = row["samples_per_second"] / base["samples_per_second"]
        row["training x"] = row["train_examples_per_second"] / base["train_examples_per_second"]
        row["memory x"] = row["peak_rss_mib"] / base["peak_rss_mib"]
    columns = ["case", "shared prompts", "trainable_parameters", "samples_per_second",
               "train_examples_per_second", "peak_rss_mib", "sampling x", "training x", "memory x"]  # fmt: skip
    title = (f"One HIR iteration of {args.model} on {args.task}: {args.queries} queries x "
             f"{args.samples} samples of <= {args.tokens} tokens, batch {args.batch_size}")  # fmt: skip
    print_table(title, columns, [[row[c] for c in columns] for row in rows])
    write_json("real_model", {"rows": rows, "settings": vars(args)})
    partial.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
