"""One GRPO iteration of the same work through TRL's GRPOTrainer and through hir, in one run:
seconds and peak RSS of each, and the ratios.

    python benchmarks/trl_grpo.py                 # ~8 min on 2 CPU cores

The work (the second study's settings, configs/smollm2-study.yaml): SmolLM2-135M-Instruct under
its chat template, LoRA r=8 (alpha 16) on every linear layer of the last 4 of its 30 layers,
`--queries` training queries of synthetic/count (the same ones on both sides: hir's sampled
queries are handed to TRL), `--samples` completions each at temperature 0.5, up to `--tokens`
new tokens, the task's feedback as the reward, and one optimizer step per `--batch_size`
completions (TRL: steps_per_generation = queries x samples / batch_size), loss "dapo", beta 0,
learning rate 3e-4, `--iterations` generation rounds.

TRL runs twice: with its defaults (gradient checkpointing on) and with gradient checkpointing
off, its faster setting here; the ratios are against the faster of the two. Each side runs in
its own process, hir first and then TRL, so that none slows another and each peak RSS is its
own; run it on an otherwise idle machine. Timed: the iterations (generation, scoring,
optimizer steps), not the model's loading. Writes benchmarks/results/trl_grpo.json with
speedup (TRL seconds / hir seconds) and memory_ratio (TRL peak RSS / hir peak RSS).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time

MODEL = "smollm2-135m-instruct"
TASK = "synthetic/count"
LAYERS, TRAINED_LAYERS = 30, 4


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=16)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument(
        "--side", choices=("hir", "trl", "trl-no-checkpointing"), help=argparse.SUPPRESS
    )
    parser.add_argument("--query_ids", help=argparse.SUPPRESS)
    return parser.parse_args()


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_hir(args) -> dict:
    from hir.arguments import ModelArguments
    from hir.tasks import load_task
    from hir.trainers.grpo import GRPOConfig, GRPOTrainer

    policy = ModelArguments(model=MODEL, lora_r=8, train_last_layers=TRAINED_LAYERS,
                            prompt_format="chat").load_policy()  # fmt: skip
    task = load_task(TASK)
    config = GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="hir-bench-grpo-"), iterations=args.iterations,
        seed=0, max_queries_per_iteration=args.queries, num_samples=args.samples,
        temperature=0.5, max_new_tokens=args.tokens, batch_size=args.batch_size,
        learning_rate=3e-4, report_to="none",
    )  # fmt: skip
    trainer = GRPOTrainer(policy, task, config)
    query_ids, tokens, steps = [], 0, 0
    started = time.perf_counter()
    for iteration in range(1, args.iterations + 1):
        trainer.sample(iteration)
        items = trainer.training_items(iteration)
        steps += trainer.update(items, iteration)["train_steps"]
        query_ids += [s.query_id for s in items[:: args.samples]]
        tokens += sum(len(s.token_ids) for s in items)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "peak_rss_mib": peak_rss_mib(), "optimizer_steps": steps,
            "completions": args.iterations * args.queries * args.samples,
            "mean_completion_tokens": tokens / (args.iterations * args.queries * args.samples),
            "query_ids": query_ids}  # fmt: skip


def study_lora(model):
    """The study's trained layers in peft's terms for TRL: LoRA r=8 (alpha 16) on every linear
    layer of the last `TRAINED_LAYERS` of SmolLM2's `LAYERS`, as hir's --lora_r 8
    --train_last_layers 4."""
    from peft import LoraConfig

    from hir.models.adapters import linear_layer_names, transformer_layers

    return LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, task_type="CAUSAL_LM",
                      target_modules=linear_layer_names(transformer_layers(model)[1]),
                      layers_to_transform=list(range(LAYERS - TRAINED_LAYERS, LAYERS)),
                      layers_pattern="layers")  # fmt: skip


def run_trl(args) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from hir.models.sources import resolve_model
    from hir.tasks import load_task

    folder = resolve_model(MODEL)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    task = load_task(TASK).for_format(True)  # the chat template's prompts, answer extraction
    rows = {r["example_id"]: r for r in task.trl_rows(conversational=True)}
    # hir's queries in hir's order; TRL's sampler repeats each `samples` times, unshuffled.
    dataset = Dataset.from_list([rows[i] for i in args.query_ids.split(",")])
    steps_per_generation = args.queries * args.samples // args.batch_size
    lora = study_lora(model)
    config = GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="trl-bench-grpo-"), use_cpu=True, bf16=False,
        report_to="none", save_strategy="no", seed=0, shuffle_dataset=False,
        per_device_train_batch_size=args.batch_size, steps_per_generation=steps_per_generation,
        num_generations=args.samples, max_completion_length=args.tokens, temperature=0.5,
        learning_rate=3e-4, beta=0.0, loss_type="dapo",
        max_steps=steps_per_generation * args.iterations, logging_steps=1,
        gradient_checkpointing=args.side == "trl",  # TRL's default; off is its faster setting
    )  # fmt: skip
    trainer = GRPOTrainer(model=model, processing_class=tokenizer, reward_funcs=[task.trl_reward()],
                          args=config, train_dataset=dataset, peft_config=lora)  # fmt: skip
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    logged = [e for e in trainer.state.log_history if "completions/mean_length" in e]
    mean_length = sum(e["completions/mean_length"] for e in logged) / max(len(logged), 1)
    return {"seconds": seconds, "peak_rss_mib": peak_rss_mib(),
            "optimizer_steps": trainer.state.global_step,
            "completions": args.iterations * args.queries * args.samples,
            "mean_completion_tokens": mean_length}  # fmt: skip


def side(args, name: str, query_ids: list[str] | None = None) -> dict:
    """One side in its own process; its result is the last line it prints."""
    command = [sys.executable, __file__, "--side", name, "--queries", str(args.queries),
               "--samples", str(args.samples), "--tokens", str(args.tokens),
               "--batch_size", str(args.batch_size), "--iterations", str(args.iterations)]  # fmt: skip
    if query_ids:
        command += ["--query_ids", ",".join(query_ids)]
    done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    args = parse()
    if args.side:
        result = run_hir(args) if args.side == "hir" else run_trl(args)  # (both TRL settings)
        print(json.dumps(result))
        return
    if args.queries * args.samples % args.batch_size:
        sys.exit("--queries x --samples must be a multiple of --batch_size (TRL's steps)")
    from _common import print_table, write_json

    hir = side(args, "hir")
    query_ids = hir.pop("query_ids")
    trl = {"TRL GRPOTrainer, defaults (gradient checkpointing on)": side(args, "trl", query_ids),
           "TRL GRPOTrainer, gradient checkpointing off": side(args, "trl-no-checkpointing", query_ids)}  # fmt: skip
    fastest = min(trl, key=lambda name: trl[name]["seconds"])
    speedup = trl[fastest]["seconds"] / hir["seconds"]
    memory_ratio = trl[fastest]["peak_rss_mib"] / hir["peak_rss_mib"]
    columns = ["side", "seconds", "peak RSS (MiB)", "optimizer steps", "completions", "mean completion tokens"]  # fmt: skip
    rows = [[name, r["seconds"], r["peak_rss_mib"], r["optimizer_steps"], r["completions"],
             r["mean_completion_tokens"]] for name, r in [*trl.items(), ("hir", hir)]]  # fmt: skip
    print_table(f"GRPO, {args.iterations} iteration(s) of {args.queries} queries x {args.samples}"
                f" completions: hir {speedup:.2f}x faster than TRL's faster setting, "
                f"{memory_ratio:.2f}x less peak RSS", columns, rows)  # fmt: skip
    write_json("trl_grpo", {"settings": {k: v for k, v in vars(args).items() if k not in ("side", "query_ids")},
                            "model": MODEL, "task": TASK, "trl": trl, "hir": hir, "against": fastest,
                            "speedup": speedup, "memory_ratio": memory_ratio})  # fmt: skip


if __name__ == "__main__":
    main()
