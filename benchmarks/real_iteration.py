"""Whole HIR iterations on a real pretrained model, the code before the speed work against today's,
in one run: sampling, training and evaluation seconds, and peak RSS.

    python benchmarks/real_iteration.py --bigbench_dir ../shared/bigbench           # ~30 min
    python benchmarks/real_iteration.py --bigbench_dir ../shared/bigbench --quick   # < 10 min

Settings are the SmolLM2 comparison's (docs/findings.md): SmolLM2-135M-Instruct under its chat
template, LoRA r=8 on all linear layers of the last 4 layers (the frozen-layer cache on), 4
samples per query at temperature 1, up to 32 new tokens, batch 16, 2 epochs, the buffer keeping
4 samples per query, pairwise contrastive term with sub-outputs, greedy evaluation on test
queries. Iteration 1 fills the buffer; iteration 2, measured, trains on the buffer carried over.

"old" is the code at `--baseline` (a git revision, checked out to a temporary worktree), "new"
the working tree; each runs in its own process, one after the other, so that neither slows the
other and each peak RSS is its own. Writes benchmarks/results/real_iteration.json (the
`--quick` run: real_iteration_quick.json) with speedup_total, speedup_sampling, speedup_training
and speedup_eval (old seconds / new seconds, on the measured iteration).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASELINE = "6e30b5c"  # main before prefix sharing and the other speed work of issue 21
ROOT = Path(__file__).resolve().parents[1]
SHARED_GGUF = ROOT.parent / "shared" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
PHASES = ("sampling", "training", "eval")


def run_case(args) -> dict:
    """One process: the iterations, timed phase by phase (with the code on sys.path)."""
    import torch

    from hir.arguments import ModelArguments, TaskArguments
    from hir.online.evaluate import evaluate_with_config
    from hir.trainers.hir import HIRConfig, HIRTrainer

    torch.manual_seed(0)
    policy = ModelArguments(model=args.model, lora_r=8, lora_target_modules="all-linear",
                            train_last_layers=4, prompt_format="chat").load_policy()  # fmt: skip
    task = TaskArguments(task=f"bigbench/{args.task}", bigbench_dir=args.bigbench_dir,
                         no_download=args.bigbench_dir is not None).load()  # fmt: skip
    config = HIRConfig(
        output_dir=tempfile.mkdtemp(prefix="hir-bench-iteration-"), iterations=args.iterations,
        seed=0, max_queries_per_iteration=args.queries, num_samples=4, temperature=1.0,
        max_new_tokens=32, batch_size=16, epochs_per_iteration=2, buffer_retention="cap:4",
        learning_rate=3e-4, eval_limit=args.eval_queries, eval_batch_size=64, report_to="none",
    )  # fmt: skip
    trainer = HIRTrainer(policy, task, config)
    iterations = []
    for iteration in range(1, args.iterations + 1):
        seconds = {}
        start = time.perf_counter()
        trainer.sample(iteration)
        seconds["sampling"] = time.perf_counter() - start
        items = trainer.training_items(iteration)
        start = time.perf_counter()
        trainer.update(items, iteration)
        seconds["training"] = time.perf_counter() - start
        start = time.perf_counter()
        result = evaluate_with_config(policy, task, config, trainer.target_instruction)
        seconds["eval"] = time.perf_counter() - start
        iterations.append({"iteration": iteration, "train_items": len(items),
                           "accuracy": result.accuracy, **seconds})  # fmt: skip
        print(f"iteration {iteration}: {json.dumps(iterations[-1])}", file=sys.stderr, flush=True)
    import hir

    return {
        "hir": str(Path(hir.__file__).parents[1]),  # which code ran
        "iterations": iterations,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        # What of that peak the frozen-layer cache holds at the end (capped, 2 GB by default).
        "frozen_cache_mib": policy.frozen_cache.bytes / 2**20,
    }


def run_code(source: Path, args) -> dict:
    """`run_case` in a fresh process that imports hir from `source` (a src/ folder)."""
    command = [sys.executable, __file__, "--case", "--model", args.model, "--task", args.task,
               "--queries", str(args.queries), "--eval_queries", str(args.eval_queries),
               "--iterations", str(args.iterations)]  # fmt: skip
    if args.bigbench_dir:
        command += ["--bigbench_dir", args.bigbench_dir]
    environment = {**os.environ, "PYTHONPATH": str(source)}
    done = subprocess.run(command, env=environment, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the case with {source} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.split("RESULT ", 1)[1])


def baseline_source(revision: str, scratch: Path) -> Path:
    """src/ of `revision`, checked out to a worktree under `scratch`."""
    folder = scratch / "baseline"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(folder), revision],
                   check=True, capture_output=True)  # fmt: skip
    return folder / "src"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_model = str(SHARED_GGUF) if SHARED_GGUF.is_file() else "smollm2-135m-instruct"
    parser.add_argument("--model", default=default_model)
    parser.add_argument("--task", default="object_counting")
    parser.add_argument("--bigbench_dir", default=None)
    parser.add_argument("--queries", type=int, default=64, help="queries sampled per iteration")
    parser.add_argument("--eval_queries", type=int, default=200)
    parser.add_argument("--iterations", type=int, default=2, help="the last one is measured")
    parser.add_argument("--baseline", default=BASELINE, help="git revision of the old code")
    parser.add_argument("--quick", action="store_true", help="16 queries, 50 test queries")
    parser.add_argument("--case", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        print("RESULT " + json.dumps(run_case(args)))
        return 0
    if args.quick:
        args.queries, args.eval_queries = 16, 50
    with tempfile.TemporaryDirectory(prefix="hir-bench-baseline-") as scratch:
        try:
            cases = {"old": run_code(baseline_source(args.baseline, Path(scratch)), args)}
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                            str(Path(scratch) / "baseline")], capture_output=True)  # fmt: skip
        cases["new"] = run_code(ROOT / "src", args)
    measured = {name: case["iterations"][-1] for name, case in cases.items()}
    for case in measured.values():
        case["total"] = sum(case[phase] for phase in PHASES)
    speedups = {f"speedup_{phase}": measured["old"][phase] / measured["new"][phase]
                for phase in (*PHASES, "total")}  # fmt: skip
    speedups["memory_ratio"] = cases["new"]["peak_rss_mib"] / cases["old"]["peak_rss_mib"]
    _print_and_write(args, cases, measured, speedups)
    return 0


def _print_and_write(args, cases: dict, measured: dict, speedups: dict) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from _common import print_table, write_json

    columns = ["code", "train items", "sampling s", "training s", "eval s", "total s",
               "peak RSS MiB", "frozen cache MiB"]  # fmt: skip
    rows = [[name, m["train_items"], m["sampling"], m["training"], m["eval"], m["total"],
             cases[name]["peak_rss_mib"], cases[name]["frozen_cache_mib"]]
            for name, m in measured.items()]  # fmt: skip
    rows.append(["old / new", "", speedups["speedup_sampling"], speedups["speedup_training"],
                 speedups["speedup_eval"], speedups["speedup_total"], speedups["memory_ratio"], ""])  # fmt: skip
    title = (f"HIR iteration {args.iterations} of {Path(args.model).name} on {args.task}: "
             f"{args.queries} queries x 4 samples, evaluation on {args.eval_queries} test queries")  # fmt: skip
    print_table(title, columns, rows)
    name = "real_iteration_quick" if args.quick else "real_iteration"
    write_json(name, {**speedups, "cases": cases, "settings": vars(args)})


if __name__ == "__main__":
    raise SystemExit(main())
