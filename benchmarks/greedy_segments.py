"""Greedy decoding of long answers: one `generate` call per batch (the baseline, at the first
batch size) against segments of 64 new tokens, the rows that ended leaving the batch between
segments (`CausalPolicy._greedy_in_segments`, what `hir eval` does for answers longer than 64
tokens), at each batch size. Same model, prompts and settings, one after the other in one process.

    python benchmarks/greedy_segments.py [--prompts 64] [--max_new_tokens 512] [--batch_sizes 16,32,64]

The prompts are IFEval's first N (../shared/ifeval/input_data.jsonl, or --ifeval FILE), asked
through SmolLM2-135M-Instruct's chat template, as `hir eval --task ifeval` asks them. Writes
benchmarks/results/greedy_segments.json: each case's seconds, the answer tokens, the baseline's
seconds over the case's, and how many answers are the same text as the baseline's.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from _common import print_table, write_json

import hir.models.causal as causal
from hir.models import load_policy
from hir.tasks import load_task

IFEVAL = Path(__file__).resolve().parents[2] / "shared" / "ifeval" / "input_data.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--ifeval", default=str(IFEVAL))
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max_new_tokens", type=int, default=512)
    parser.add_argument("--batch_sizes", default="16,32,64")
    args = parser.parse_args()
    task = load_task(f"ifeval:{args.ifeval}")
    examples = task.split("test")[: args.prompts]
    prompts = [task.prompt(e.query, task.instruction_for(e, task.correct_instruction)) for e in examples]  # fmt: skip
    policy = load_policy(args.model)
    policy.generate(prompts[:2], max_new_tokens=4)  # warm-up
    sizes = [int(size) for size in args.batch_sizes.split(",")]
    cases = [("one call per batch", 10**9, sizes[0])] + [
        ("segments of 64", 64, size) for size in sizes
    ]
    results = []
    for name, segment, batch_size in cases:
        causal.SEGMENT_TOKENS = segment
        start = time.perf_counter()
        answers = policy.generate(prompts, max_new_tokens=args.max_new_tokens, batch_size=batch_size)  # fmt: skip
        seconds = time.perf_counter() - start
        texts = [a[0] for a in answers]
        tokens = sum(len(policy.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
        results.append({"case": name, "batch_size": batch_size, "seconds": seconds, "answer_tokens": tokens, "answers": texts})  # fmt: skip
    baseline = results[0]
    for r in results:
        r["speedup"] = baseline["seconds"] / r["seconds"]
        r["same_answers"] = sum(a == b for a, b in zip(baseline["answers"], r["answers"], strict=True))  # fmt: skip
    print_table(
        f"Greedy decoding, {args.model}, IFEval's first {len(prompts)} prompts, up to "
        f"{args.max_new_tokens} new tokens, {torch.get_num_threads()} threads",
        ["", "batch", "seconds", "answer tokens / s", "baseline s / case s", "answers as the baseline's"],
        [[r["case"], r["batch_size"], r["seconds"], r["answer_tokens"] / r["seconds"], f"{r['speedup']:.2f}x",
          f"{r['same_answers']} of {len(prompts)}"] for r in results],
    )  # fmt: skip
    write_json("greedy_segments", {
        "settings": vars(args),
        "cases": [{k: v for k, v in r.items() if k != "answers"} for r in results],
    })  # fmt: skip


if __name__ == "__main__":
    main()
