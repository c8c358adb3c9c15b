"""Memory of one training step on SmolLM2: HIR against FARL, with the output layer fused into the
loss (`Policy.output_statistics`) and through full logits, each case in its own process.

    python benchmarks/step_memory.py --bigbench_dir ../shared/bigbench

The setting of the memory question (docs/performance.md): LoRA r=8 on all linear layers of the
last 4 layers (the frozen-layer cache on), chat template, 16 (query, output) items per step with
24-token outputs. HIR reads each item under both instructions (pairwise contrastive term); FARL
reads it once. The frozen layers are run for the step's pairs first (as an update does), so that
the step's own memory is what grows: `step MiB` is peak RSS after two steps minus RSS before
them.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_GGUF = ROOT.parent / "shared" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
CASES = [("hir", "fused"), ("hir", "logits"), ("farl", "fused"), ("farl", "logits")]


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def run_case(method: str, path: str, args) -> dict:
    import torch

    from hir.arguments import ModelArguments, TaskArguments
    from hir.trainers.farl import FARLConfig, FARLTrainer
    from hir.trainers.hir import HIRConfig, HIRTrainer
    from hir.trainers.loop import TrainItem

    torch.manual_seed(0)
    policy = ModelArguments(model=args.model, lora_r=8, lora_target_modules="all-linear",
                            train_last_layers=4, prompt_format="chat").load_policy()  # fmt: skip
    if path == "logits":
        policy._fusable_output_layer = lambda model: None
    task = TaskArguments(task=f"bigbench/{args.task}", bigbench_dir=args.bigbench_dir,
                         no_download=args.bigbench_dir is not None).load()  # fmt: skip
    common = {"output_dir": tempfile.mkdtemp(prefix="hir-bench-step-"), "report_to": "none",
              "seed": 0, "batch_size": 16}  # fmt: skip
    trainer = (HIRTrainer(policy, task, HIRConfig(**common, sub_output_prob=0.0))
               if method == "hir" else FARLTrainer(policy, task, FARLConfig(**common)))  # fmt: skip
    # Outputs of exactly `tokens` tokens: words of the queries, cut by the tokenizer.
    examples = trainer.train_examples[: args.items]
    outputs = []
    for example in examples:
        ids = policy.tokenizer(" ".join([example.query] * 4))["input_ids"][: args.tokens]
        outputs.append(policy.tokenizer.decode(ids))
    instruction = task.correct_instruction
    items = [TrainItem(e, instruction, o) for e, o in zip(examples, outputs)]
    policy.precompute_frozen_layers(*trainer.training_pairs(items))
    before = rss_mib()
    for _ in range(2):
        loss, _ = trainer.loss(items)
        loss.backward()
        trainer.model.zero_grad()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"method": method, "path": path, "rss_before_mib": before, "peak_rss_mib": peak,
            "step_mib": peak - before,
            "frozen_cache_mib": policy.frozen_cache.bytes / 2**20}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_model = str(SHARED_GGUF) if SHARED_GGUF.is_file() else "smollm2-135m-instruct"
    parser.add_argument("--model", default=default_model)
    parser.add_argument("--task", default="word_sorting")
    parser.add_argument("--bigbench_dir", default=None)
    parser.add_argument("--items", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=24)
    parser.add_argument("--case", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        print("RESULT " + json.dumps(run_case(*args.case, args)))
        return 0
    results = []
    for method, path in CASES:
        command = [sys.executable, __file__, "--case", method, path, "--model", args.model,
                   "--task", args.task, "--items", str(args.items), "--tokens", str(args.tokens)]  # fmt: skip
        if args.bigbench_dir:
            command += ["--bigbench_dir", args.bigbench_dir]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{method}/{path} failed:\n{done.stderr[-3000:]}")
        results.append(json.loads(done.stdout.split("RESULT ", 1)[1]))
    sys.path.insert(0, str(Path(__file__).parent))
    from _common import print_table, write_json

    columns = ["method", "output layer", "RSS before MiB", "peak RSS MiB", "step MiB",
               "frozen cache MiB"]  # fmt: skip
    rows = [[r["method"], r["path"], r["rss_before_mib"], r["peak_rss_mib"], r["step_mib"],
             r["frozen_cache_mib"]] for r in results]  # fmt: skip
    print_table(f"One training step, {args.items} items x {args.tokens}-token outputs, "
                f"SmolLM2 LoRA r=8 on the last 4 layers", columns, rows)  # fmt: skip
    write_json("step_memory", {"results": results, "settings": vars(args)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
