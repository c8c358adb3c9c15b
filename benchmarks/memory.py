"""Memory: peak memory of one HIR iteration (sampling + training) with hir's fast paths and
with the reference loops, each in a fresh process. CPU: peak resident set size; GPU: CUDA max
allocated.

    python benchmarks/memory.py [--queries 64]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile

import torch
from _common import build_policy, paper_task, print_table, write_json


def one_iteration(arch: str, way: str, queries: int) -> dict:
    from public_code import public_code_hir_step, public_code_sample
    from training import _prompts, make_items

    from hir.trainers.epochs import train_epochs
    from hir.trainers.hir import HIRConfig, HIRTrainer

    task = paper_task()
    policy, _ = build_policy(arch, task)
    trainer = HIRTrainer(policy, task, HIRConfig(output_dir=tempfile.mkdtemp(), report_to="none"))
    examples = task.split("train")[:queries]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    items = make_items(task, trainer.relabeler, queries * 4)
    if way == "hir":
        prompts = [task.prompt(e.query) for e in examples]
        policy.generate(prompts, num_samples=4, do_sample=True, max_new_tokens=16, batch_size=64)
        train_epochs(trainer.accelerator, trainer.model, trainer.optimizer, trainer.scheduler, items, trainer.loss,
                     epochs=1, batch_size=64, generator=trainer.generator)  # fmt: skip
    else:
        public_code_sample(policy, [task.prompt(e.query) for e in examples], 4, 16)
        optimizer = torch.optim.AdamW(policy.model.parameters(), lr=1e-5)
        for item in items:
            public_code_hir_step(policy, optimizer, *_prompts(task, trainer, item))
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {"peak_rss_mib": peak_kib / 1024, "rss_before_iteration_mib": before / 1024}
    if torch.cuda.is_available():
        result["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queries", type=int, default=64)
    parser.add_argument("--child", nargs=2, metavar=("ARCH", "WAY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_iteration(*args.child, args.queries)))
        return
    rows, results = [], {}
    for arch in ("t5", "gpt2"):
        for way in ("reference", "hir"):
            # A fresh process per measurement: peak RSS never goes down within one.
            out = subprocess.run([sys.executable, __file__, "--queries", str(args.queries), "--child", arch, way],
                                 capture_output=True, text=True, check=True).stdout  # fmt: skip
            results[f"{arch}-{way}"] = json.loads(out.strip().splitlines()[-1])
        ref, fast = results[f"{arch}-reference"], results[f"{arch}-hir"]
        rows.append([arch, ref["peak_rss_mib"], fast["peak_rss_mib"],
                     ref["peak_rss_mib"] - ref["rss_before_iteration_mib"],
                     fast["peak_rss_mib"] - fast["rss_before_iteration_mib"]])  # fmt: skip
    print_table(
        f"Memory of one HIR iteration ({args.queries} queries x 4 samples, then one epoch over {args.queries * 4} "
        f"relabeled samples; {'CUDA' if torch.cuda.is_available() else 'CPU RSS'}, MiB)",
        [
            "model",
            "reference peak",
            "hir peak",
            "reference growth in iteration",
            "hir growth in iteration",
        ],
        rows,
    )
    write_json("memory", {"settings": {"queries": args.queries}, "results": results})


if __name__ == "__main__":
    main()
