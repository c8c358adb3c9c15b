"""Sampling speed: hir's online sampler vs the public code's loop, same model, prompts, settings.

    python benchmarks/sampling.py [--queries 64] [--samples 4] [--max-new-tokens 16]

hir: many queries per `generate` call, grouped by length, n return sequences each, KV cache.
reference: one query per `generate` call with num_return_sequences=n (online_sampler.py).
Both sample at temperature 1 with no top-k/top-p and drop duplicates of a query.
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import build_policy, paper_task, print_table, write_json
from public_code import public_code_sample

from hir.online.sampling import sample_outputs


def count_tokens(policy, outputs: list[list[str]]) -> int:
    texts = [o for group in outputs for o in group]
    return sum(len(ids) for ids in policy.tokenizer(texts, add_special_tokens=False)["input_ids"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queries", type=int, default=64)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    task = paper_task()
    examples = task.split("train")[: args.queries]
    prompts = [task.prompt(e.query) for e in examples]
    rows, results = [], {}
    for arch in ("t5", "gpt2"):
        policy, params = build_policy(arch, task)
        policy.generate(prompts[:2], num_samples=2, do_sample=True, max_new_tokens=2)  # warm-up
        torch.manual_seed(0)
        start = time.perf_counter()
        reference = public_code_sample(policy, prompts, args.samples, args.max_new_tokens)
        reference_seconds = time.perf_counter() - start
        torch.manual_seed(0)
        start = time.perf_counter()
        samples = sample_outputs(
            policy, task, examples, instruction=task.correct_instruction, iteration=0,
            num_samples=args.samples, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
        )  # fmt: skip
        hir_seconds = time.perf_counter() - start
        drawn = len(prompts) * args.samples
        hir_outputs = [[s.output for s in samples]]
        reference_tps = count_tokens(policy, reference) / reference_seconds
        hir_tps = count_tokens(policy, hir_outputs) / hir_seconds
        results[arch] = {
            "parameters": params,
            "reference_outputs_per_second": drawn / reference_seconds,
            "hir_outputs_per_second": drawn / hir_seconds,
            "reference_tokens_per_second": reference_tps,
            "hir_tokens_per_second": hir_tps,
            "speedup": reference_seconds / hir_seconds,
        }
        rows.append(
            [
                arch,
                f"{params / 1e6:.2f}M",
                drawn / reference_seconds,
                drawn / hir_seconds,
                reference_tps,
                hir_tps,
                reference_seconds / hir_seconds,
            ]
        )
    print_table(
        f"Sampling: {args.queries} queries x {args.samples} samples, up to {args.max_new_tokens} new tokens, "
        f"prompts of {task.name}",
        [
            "model",
            "params",
            "reference outputs/s",
            "hir outputs/s",
            "reference tokens/s",
            "hir tokens/s",
            "speedup",
        ],
        rows,
    )
    write_json("sampling", {"settings": vars(args), "results": results})


if __name__ == "__main__":
    main()
