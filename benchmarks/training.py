"""Training speed: hir's HIR update vs the public code's step, same model, data and loss.

    python benchmarks/training.py [--examples 128] [--batch-size 64]

The items are what one HIR iteration puts in the buffer: 4 samples per query (an option letter
each, as a policy that answers in the right format samples them), duplicates dropped, each
relabeled by its score.

hir: batches of `batch_size`, the relabeled and the opposite instruction scored in one forward
pass, padding to the batch's longest sequence, sub-output relabeling on (HIRTrainer.loss).
hir grouped: the same, with a query's samples batched together (group_by_query), so that each
distinct prompt runs once for all the rows that repeat it.
reference: one example per step and three forward passes, one a duplicate (offline_trainer.py).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time

import torch
from _common import build_policy, paper_task, print_table, write_json
from public_code import public_code_hir_step

from hir.trainers.epochs import train_epochs
from hir.trainers.hir import HIRConfig, HIRTrainer
from hir.trainers.loop import TrainItem


def make_items(task, relabeler, samples: int = 4, seed: int = 0) -> list[TrainItem]:
    """One iteration's buffer, relabeled, at the paper's prompt length: per training query,
    `samples` option letters drawn at random with duplicates dropped (as the sampler does)."""
    rng = random.Random(seed)
    items = []
    for example in task.split("train"):
        for output in dict.fromkeys(rng.choice(["(A)", "(B)", "(C)"]) for _ in range(samples)):
            score = task.score(output, example)
            items.append(TrainItem(example, relabeler("", example.query, output, score), output))
    return items


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--examples", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--reference-examples", type=int, default=64)
    args = parser.parse_args()
    task = paper_task()
    rows, results = [], {}
    for arch in ("t5", "gpt2"):
        policy, params = build_policy(arch, task)
        config = HIRConfig(
            output_dir=tempfile.mkdtemp(),
            report_to="none",
            device="cpu" if not torch.cuda.is_available() else "auto",
        )
        trainer = HIRTrainer(policy, task, config)
        buffer = make_items(task, trainer.relabeler)
        # A random batch of a whole buffer rarely holds two samples of one query; a grouped
        # batch holds all of a few queries' samples.
        items = random.Random(1).sample(buffer, args.examples)
        grouped_items = buffer[: args.examples]

        optimizer = torch.optim.AdamW(policy.model.parameters(), lr=1e-5)
        reference_items = items[: args.reference_examples]
        public_code_hir_step(
            policy, optimizer, *_prompts(task, trainer, reference_items[0])
        )  # warm-up
        start = time.perf_counter()
        for item in reference_items:
            public_code_hir_step(policy, optimizer, *_prompts(task, trainer, item))
        reference_rate = len(reference_items) / (time.perf_counter() - start)

        train_epochs(trainer.accelerator, trainer.model, trainer.optimizer, trainer.scheduler, items[: args.batch_size],
                     trainer.loss, epochs=1, batch_size=args.batch_size, generator=trainer.generator)  # warm-up  # fmt: skip
        metrics = train_epochs(trainer.accelerator, trainer.model, trainer.optimizer, trainer.scheduler, items,
                               trainer.loss, epochs=1, batch_size=args.batch_size, generator=trainer.generator)  # fmt: skip
        hir_rate = metrics["train_examples_per_second"]
        metrics = train_epochs(trainer.accelerator, trainer.model, trainer.optimizer, trainer.scheduler, grouped_items,
                               trainer.loss, epochs=1, batch_size=args.batch_size, generator=trainer.generator,
                               group_of=lambda item: item.example.id)  # fmt: skip
        grouped_rate = metrics["train_examples_per_second"]
        results[arch] = {"parameters": params, "reference_examples_per_second": reference_rate,
                         "hir_examples_per_second": hir_rate, "speedup": hir_rate / reference_rate,
                         "hir_grouped_examples_per_second": grouped_rate,
                         "grouped_speedup": grouped_rate / reference_rate}  # fmt: skip
        rows.append([arch, f"{params / 1e6:.2f}M", reference_rate, hir_rate, grouped_rate,
                     hir_rate / reference_rate, grouped_rate / reference_rate])  # fmt: skip
    print_table(
        f"Training (HIR update: CE + pairwise contrastive + entropy, sub-output on), prompts of {task.name}",
        ["model", "params", "reference examples/s", "hir examples/s", "hir grouped examples/s",
         "speedup", "grouped speedup"],
        rows,
    )  # fmt: skip
    write_json("training", {"settings": vars(args), "results": results})


def _prompts(task, trainer, item: TrainItem) -> tuple[str, str, str]:
    opposite = trainer.relabeler.opposite(item.instruction)
    return (
        task.prompt(item.example.query, item.instruction),
        task.prompt(item.example.query, opposite),
        item.output,
    )


if __name__ == "__main__":
    main()
