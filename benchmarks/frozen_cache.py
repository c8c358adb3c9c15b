"""Training speed with the frozen layers' activations kept (`--activation_cache_mb`, the
default) against recomputing them every step (`--activation_cache_mb 0`), on a real pretrained
model (default: SmolLM2-135M-Instruct, chat template) with the last 4 layers trained, with and
without LoRA, prompts shared. HIR retrains its whole buffer every iteration, for
`epochs_per_iteration` epochs: a sample's frozen layers run once, every later pass reuses them.
Each case runs in its own process (its peak RSS is its own); ratios are against the same setup
without the cache, measured in the same run.

`--method ppo` measures PPO (LoRA r=8 on the last 4 layers, as in the study) three ways: no
cache; the policy's cache only, the value model (a copy of the policy) running every layer, as
before it shared them; and the value model handed the policy's kept activations (the default).

    python benchmarks/frozen_cache.py --bigbench_dir ../shared/bigbench
    python benchmarks/frozen_cache.py --bigbench_dir ../shared/bigbench --method ppo
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

SCOPES = {
    "last 4 layers": {"train_last_layers": 4},
    "LoRA r=8, last 4 layers": {"lora_r": 8, "train_last_layers": 4},
}
LORA_LAST_4 = SCOPES["LoRA r=8, last 4 layers"]
# PPO's cases: (name, activation_cache_mb, whether the value model reads the policy's cache).
PPO_CASES = [("no cache", 0, False), ("policy's cache only", 2048, False),
             ("policy's and value model's", 2048, True)]  # fmt: skip


def run_case(args) -> dict:
    import torch

    from hir.arguments import ModelArguments
    from hir.models.policy import Policy
    from hir.tasks import load_task
    from hir.trainers.hir import HIRConfig, HIRTrainer
    from hir.trainers.ppo import PPOConfig, PPOTrainer

    torch.manual_seed(0)
    scope = json.loads(args.case)
    if not scope.pop("value_model_shares", True):  # the value model as before: every layer runs
        Policy.share_frozen_layers = lambda self, copy: None
    policy = ModelArguments(model=args.model, **scope).load_policy()
    task = load_task(f"bigbench/{args.task}", bigbench_dir=args.bigbench_dir)
    settings = dict(
        output_dir=tempfile.mkdtemp(prefix="hir-bench-cache-"), iterations=args.iterations,
        seed=0, max_queries_per_iteration=args.queries, num_samples=args.samples,
        max_new_tokens=args.tokens, batch_size=args.batch_size, eval_limit=1,
        report_to="none", learning_rate=1e-5,
    )  # fmt: skip
    if args.method == "ppo":
        PPOTrainer(policy, task, PPOConfig(ppo_epochs=args.epochs, **settings)).train()
    else:
        config = HIRConfig(epochs_per_iteration=args.epochs, group_by_query=True, **settings)
        HIRTrainer(policy, task, config).train()
    history = [json.loads(line) for line in (Path(settings["output_dir"]) / "metrics.jsonl").read_text().splitlines()]  # fmt: skip
    for h in history:  # PPO trains on its whole rollout, the buffer
        h.setdefault("train_items", h.get("buffer_size", 0))
    trained = [h for h in history if h.get("train_items")]
    cache = policy.frozen_cache
    return {
        "train_seconds": sum(
            h["train_items"] * args.epochs / h["train_examples_per_second"] for h in trained
        ),  # fmt: skip
        "last_iteration_examples_per_second": trained[-1]["train_examples_per_second"],
        "final_accuracy": history[-1]["accuracy"],
        "final_loss": trained[-1]["loss"],
        "cache_hits": cache.hits if cache else 0,
        "cache_misses": cache.misses if cache else 0,
        "cache_mib": cache.bytes / 2**20 if cache else 0.0,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv: list[str] | None = None) -> int:
    parser = real_model_parser(__doc__, queries=8)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--method", choices=["hir", "ppo"], default="hir",
                        help="ppo: epochs are PPO's passes over each rollout")  # fmt: skip
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case is not None:
        print("RESULT " + json.dumps(run_case(args)))
        return 0
    if args.method == "ppo":
        cases = [(LORA_LAST_4, name, {"activation_cache_mb": mb, "value_model_shares": shares})
                 for name, mb, shares in PPO_CASES]  # fmt: skip
    else:
        cases = [(scope, name, {"activation_cache_mb": mb})
                 for name, scope in SCOPES.items() for mb in (0, 2048)]  # fmt: skip
    rows = []
    for scope, name, setting in cases:
        command = [sys.executable, __file__, "--case", json.dumps({**scope, **setting}),
                   "--method", args.method, "--model", args.model, "--task", args.task,
                   "--queries", str(args.queries), "--samples", str(args.samples),
                   "--tokens", str(args.tokens), "--batch_size", str(args.batch_size),
                   "--iterations", str(args.iterations), "--epochs", str(args.epochs)]  # fmt: skip
        if args.bigbench_dir:
            command += ["--bigbench_dir", args.bigbench_dir]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        cache = bool(setting["activation_cache_mb"])
        rows.append({"case": name, "cache": cache, **json.loads(output.split("RESULT ", 1)[1])})
        print(f"done: {name}, cache={cache}", file=sys.stderr, flush=True)
    for row in rows:
        base = next(r for r in rows if r["case"] == row["case"] and not r["cache"]) if args.method == "hir" else rows[0]  # fmt: skip
        row["training time x"] = base["train_seconds"] / row["train_seconds"]
        row["memory x"] = row["peak_rss_mib"] / base["peak_rss_mib"]
    columns = ["case", "cache", "train_seconds", "last_iteration_examples_per_second",
               "cache_hits", "cache_misses", "cache_mib", "peak_rss_mib", "final_loss",
               "training time x", "memory x"]  # fmt: skip
    title = (f"{args.method.upper()} on {args.model}, {args.task}: {args.iterations} iterations x "
             f"{args.epochs} epochs, {args.queries} queries x {args.samples} samples, batch "
             f"{args.batch_size}")  # fmt: skip
    print_table(title, columns, [[row[c] for c in columns] for row in rows])
    name = "frozen_cache" if args.method == "hir" else "frozen_cache_ppo"
    write_json(name, {"rows": rows, "settings": vars(args)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
