"""HIR's premise, measured: does the starting policy follow the instruction it is relabeled with?

For each task, greedy test-split answers under the correct-answer and the wrong-answer
instruction: the accuracy under each, and the share of queries where both give the same
extracted answer. A policy that follows the instructions scores high under the first, low
under the second, and rarely answers the same; one that ignores them answers the same.

    python benchmarks/premise.py --model smollm2-135m-instruct --bigbench_dir ../shared/bigbench
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from hir.arguments import ModelArguments
from hir.recipes.premise import measure_premise
from hir.runs.fileio import atomic_write_json
from hir.runs.versions import library_versions
from hir.tasks import load_task

TASKS = ("logical_deduction_three_objects", "object_counting", "date_understanding")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--prompt_format", default="auto")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--bigbench_dir", default=None)
    parser.add_argument("--split", default="test")
    parser.add_argument("--max_new_tokens", type=int, default=24)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--output", default="results/premise-smollm2/premise.json")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    policy = ModelArguments(model=args.model, prompt_format=args.prompt_format).load_policy()
    rows = []
    for name in args.tasks.split(","):
        task = load_task(f"bigbench/{name}", bigbench_dir=args.bigbench_dir)
        rows.append(measure_premise(policy, task, args.split, args.max_new_tokens, args.limit))
        print(f"done {name} ({time.perf_counter() - started:.0f}s)", file=sys.stderr)
    print(f"\n{args.model} ({'chat' if policy.chat else 'plain'} prompts), {args.split} split\n")
    print("| task | n | acc. (correct instr.) | acc. (wrong instr.) | same answer | well-formed |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['task']} | {r['examples']} | {r['accuracy_correct_instruction']:.3f} | "
              f"{r['accuracy_wrong_instruction']:.3f} | {r['same_answer_share']:.3f} | "
              f"{r['well_formed_correct_instruction']:.3f} / {r['well_formed_wrong_instruction']:.3f} |")  # fmt: skip
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(output, {"rows": rows, "config": vars(args), "versions": library_versions(),
                               "wall_seconds": time.perf_counter() - started})  # fmt: skip
    print(f"\nwrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
