"""The GPU check: what hir does on a GPU, in one run of a few minutes. `benchmarks/gpu_check.sh`
runs it after the tests marked `gpu`; it installs what the GPU image lacks from `.gpu-bundle/`.

    python benchmarks/gpu_check.py [--cpu] [--model FOLDER] [--output FILE]

On a SmolLM2-135M-shaped model (`--model`: a folder with real weights; default: the shape from
`.gpu-bundle/` or, without it, built here, with random weights: throughput does not depend on
them), all weights trained, mixed precision "auto" (bf16 on a GPU), on synthetic/count:

- one HIR, FARL and PPO iteration each (64 queries x 4 samples): sampling outputs/s, training
  examples/s (PPO: its rollout scoring and 4 passes; FARL keeps every sample, since random
  weights write no right one), peak GPU memory (HIR's against PPO's, which adds a value model
  and a reference);
- a plain training step (16 x 256 tokens): its share of the device's bf16 peak, counting
  6 x parameters FLOPs per token (attention's own FLOPs left out, as is usual).

A table on stdout and JSON (default `benchmarks/results/gpu_check-<device>.json`). `--cpu`: the
same on a tiny model on the CPU, in seconds: the test suite runs it, so that the script cannot rot.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import string
import sys
import tempfile
import time
from pathlib import Path

import torch

from hir.models import load_policy
from hir.models.small_models import train_tokenizer
from hir.runs.versions import library_versions
from hir.tasks import load_task
from hir.trainers.farl import FARLConfig, FARLTrainer
from hir.trainers.hir import HIRConfig, HIRTrainer
from hir.trainers.ppo import PPOConfig, PPOTrainer

BUNDLED_SHAPE = Path(__file__).resolve().parents[1] / ".gpu-bundle" / "smollm2-135m-instruct-shape"
# SmolLM2-135M's architecture, for a machine without the bundle.
SMOLLM2_135M = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                    num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                    rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True,
                    vocab_size=49152)  # fmt: skip
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True)  # fmt: skip
# Dense bf16 peak FLOP/s by device name (the makers' figures, without sparsity); the most
# specific names first ("NVIDIA H100 80GB HBM3" is the SXM part).
BF16_PEAK = {"H200": 989e12, "H100 PCIe": 756e12, "H100 NVL": 835e12, "H100": 989e12,
             "A100": 312e12, "L40S": 362e12, "A10G": 70e12}  # fmt: skip
METHODS = {"hir": (HIRTrainer, HIRConfig), "farl": (FARLTrainer, FARLConfig),
           "ppo": (PPOTrainer, PPOConfig)}  # fmt: skip


def build_model(folder: Path, cpu: bool, seed: int = 0) -> str:
    """A Llama-architecture model with random weights in `folder`: SmolLM2-135M's shape and
    tokenizer (from the bundle), or (`cpu`, or no bundle) a tokenizer trained here."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    if BUNDLED_SHAPE.is_dir() and not cpu:
        config = AutoConfig.from_pretrained(BUNDLED_SHAPE)
        tokenizer = AutoTokenizer.from_pretrained(BUNDLED_SHAPE)
    else:
        # A vocabulary of SmolLM2's size needs text with that many distinct pieces.
        rng = random.Random(seed)
        words = [" ".join("".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 9)))
                          for _ in range(50)) for _ in range(200 if cpu else 20000)]  # fmt: skip
        texts = [e.query for e in load_task("synthetic/count").split("train")] + words
        tokenizer = train_tokenizer(texts, 400 if cpu else SMOLLM2_135M["vocab_size"])
        shape = TINY if cpu else SMOLLM2_135M
        config = LlamaConfig(**{**shape, "vocab_size": len(tokenizer)},
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                             bos_token_id=tokenizer.bos_token_id)  # fmt: skip
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def method_iteration(method: str, model: str, output_dir: Path, cpu: bool) -> dict:
    """One iteration of `method` (sampling, then training): its throughput and peak memory."""
    trainer_class, config_class = METHODS[method]
    settings = dict(output_dir=str(output_dir), iterations=1, seed=0, report_to="none",
                    num_samples=2 if cpu else 4, max_queries_per_iteration=8 if cpu else 64,
                    max_new_tokens=8 if cpu else 32, batch_size=8 if cpu else 16,
                    eval_limit=8 if cpu else 64, device="cpu" if cpu else "auto",
                    mixed_precision="no" if cpu else "auto")  # fmt: skip
    if method != "ppo":
        settings["epochs_per_iteration"] = 1
    if method == "farl":
        # Random weights write no right answer: FARL keeps every sample, so that it trains.
        settings["success_threshold"] = 0.0
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    trainer = trainer_class(load_policy(model), "synthetic/count", config_class(**settings))
    started = time.perf_counter()
    trainer.train()
    last = trainer.history[-1]
    result = {
        "sampling_outputs_per_second": last["samples_per_second"],
        "training_examples_per_second": last.get("train_examples_per_second"),
        "iteration_seconds": time.perf_counter() - started,
        "mixed_precision": trainer.accelerator.mixed_precision,
        "peak_gpu_memory_mib": torch.cuda.max_memory_allocated() / 2**20
        if torch.cuda.is_available() else None,
    }  # fmt: skip
    del trainer
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return result


def training_step_share_of_peak(model: str, cpu: bool, steps: int = 5) -> dict:
    """A plain causal-LM training step on random tokens (bf16 autocast on a GPU): tokens/s and
    6 x parameters x tokens/s against the device's bf16 peak."""
    policy = load_policy(model, device="cpu" if cpu else "auto")
    network = policy.model.train()
    parameters = sum(p.numel() for p in network.parameters())
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-5)
    batch, length = (4, 32) if cpu else (16, 256)
    ids = torch.randint(network.config.vocab_size, (batch, length), device=policy.device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=not cpu)

    def step():
        with autocast:
            loss = network(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    step()  # warm-up: kernels chosen, memory allocated
    if not cpu:
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if not cpu:
        torch.cuda.synchronize()
    tokens_per_second = steps * batch * length / (time.perf_counter() - started)
    peak = None if cpu else bf16_peak(torch.cuda.get_device_name())
    flops = 6 * parameters * tokens_per_second
    return {"parameters": parameters, "tokens_per_second": tokens_per_second,
            "model_flops_per_second": flops, "bf16_peak_flops": peak,
            "share_of_bf16_peak": flops / peak if peak else None}  # fmt: skip


def bf16_peak(device_name: str) -> float | None:
    for name, peak in BF16_PEAK.items():
        if name in device_name:
            return peak
    return None


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cpu", action="store_true", help="a tiny model on the CPU (the suite's run)"
    )
    parser.add_argument(
        "--model", help="a model folder with real weights (default: random weights)"
    )
    parser.add_argument("--output", help="the JSON file (default: benchmarks/results/gpu_check-<device>.json)")  # fmt: skip
    args = parser.parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device; pass --cpu for the CPU run")
    device = "cpu" if args.cpu else torch.cuda.get_device_name()
    with tempfile.TemporaryDirectory(prefix="hir-gpu-check-") as scratch:
        model = args.model or build_model(Path(scratch) / "model", args.cpu)
        # The device's first calls choose kernels and allocate: not any method's time.
        load_policy(model, device="cpu" if args.cpu else "auto").generate(
            ["warm up"], max_new_tokens=4
        )
        report = {
            "device": device,
            "model": args.model or ("tiny random Llama" if args.cpu else "SmolLM2-135M shape, random weights"),
            "methods": {m: method_iteration(m, model, Path(scratch) / m, args.cpu) for m in METHODS},
            "training_step": training_step_share_of_peak(model, args.cpu),
            "versions": library_versions(),
        }  # fmt: skip
    hir_memory, ppo_memory = (report["methods"][m]["peak_gpu_memory_mib"] for m in ("hir", "ppo"))
    report["ppo_over_hir_peak_memory"] = ppo_memory / hir_memory if hir_memory else None
    default = Path(__file__).parent / "results" / f"gpu_check-{device.replace(' ', '_')}.json"
    output = Path(args.output or default)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"written: {output}")
    return report


def print_table(report: dict) -> None:
    print(f"| {report['device']} | outputs/s (sampling) | examples/s (training) | peak GPU MiB |")
    print("|---|---|---|---|")
    for method, r in report["methods"].items():
        memory = f"{r['peak_gpu_memory_mib']:.0f}" if r["peak_gpu_memory_mib"] else "-"
        examples = r["training_examples_per_second"] or 0.0
        print(f"| {method} | {r['sampling_outputs_per_second']:.1f} | {examples:.1f} | {memory} |")
    step = report["training_step"]
    share = step["share_of_bf16_peak"]
    print(f"training step: {step['tokens_per_second']:.0f} tokens/s"
          + (f", {share:.1%} of the bf16 peak" if share else ""))  # fmt: skip


if __name__ == "__main__":
    main()
