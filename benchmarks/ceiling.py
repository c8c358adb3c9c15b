"""Ceiling: the machine's measured matmul throughput, and the share of it that hir's training
step (and the reference step) reaches, for three model sizes.

    python benchmarks/ceiling.py

Useful model FLOPs of a training step (the same count for hir and the reference): per token,
6 x (the non-embedding parameters that token passes through) for the forward and backward
matmuls, plus 12 x layers x attended length x width for attention, plus 6 x vocabulary x width
for each output token's logits. Work the reference repeats or wastes (the duplicate forward
pass, logits at prompt positions) is not counted, so its share shows its useful throughput.
"""

from __future__ import annotations

import tempfile
import time

import torch
from _common import build_policy, paper_task, print_table, write_json
from public_code import public_code_hir_step
from training import _prompts, make_items

from hir.losses import IGNORE_INDEX
from hir.trainers.hir import HIRConfig, HIRTrainer


def matmul_flops_per_second(size: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def step_flops(policy, batch, logit_tokens: int) -> float:
    """Useful model FLOPs of one forward + backward pass over `batch`."""
    model, config = policy.model, policy.model.config
    width = getattr(config, "d_model", None) or config.n_embd
    embedding = config.vocab_size * width
    mask = batch.inputs["attention_mask"]
    prompt_tokens, prompt_length = int(mask.sum()), mask.shape[1]
    head = 6 * embedding * logit_tokens
    if not policy.is_encoder_decoder:
        body = sum(p.numel() for p in model.parameters()) - embedding
        return (
            6 * body * prompt_tokens
            + 12 * config.n_layer * prompt_length * width * prompt_tokens
            + head
        )
    # Encoder weights see encoder tokens; decoder weights see decoder tokens (and attend to both).
    decoder_mask = batch.labels != IGNORE_INDEX
    decoder_tokens, decoder_length = int(decoder_mask.sum()), decoder_mask.shape[1]
    encoder_body = sum(p.numel() for p in model.encoder.parameters()) - embedding
    decoder_body = sum(p.numel() for p in model.decoder.parameters()) - embedding
    encoder = (
        6 * encoder_body * prompt_tokens
        + 12 * config.num_layers * prompt_length * width * prompt_tokens
    )
    decoder = (
        6 * decoder_body * decoder_tokens
        + 12 * config.num_decoder_layers * (decoder_length + prompt_length) * width * decoder_tokens
    )
    return encoder + decoder + head


def main() -> None:
    peak = matmul_flops_per_second()
    task = paper_task()
    rows, results = [], {}
    for arch in ("gpt2", "t5"):
        for size in ("tiny", "small", "base"):
            policy, params = build_policy(arch, task, size=size)
            trainer = HIRTrainer(
                policy,
                task,
                HIRConfig(
                    output_dir=tempfile.mkdtemp(),
                    report_to="none",
                    sub_output_prob=0.0,
                ),
            )
            # One sample per query: no prompt repeats, so both loops do the same work.
            items = make_items(task, trainer.relabeler, samples=1)[:64]
            prompts = [task.prompt(i.example.query, i.instruction) for i in items]
            opposite = [
                task.prompt(i.example.query, trainer.relabeler.opposite(i.instruction))
                for i in items
            ]
            outputs = [i.output for i in items]
            encoded = policy.encode(prompts + opposite, outputs * 2)
            output_tokens = int((encoded.labels != IGNORE_INDEX).sum())
            hir_flops = step_flops(policy, encoded, output_tokens)
            trainer.loss(items)[0].backward()  # warm-up
            trainer.optimizer.zero_grad()
            start = time.perf_counter()
            for _ in range(3):
                loss, _ = trainer.loss(items)
                loss.backward()
                trainer.optimizer.step()
                trainer.optimizer.zero_grad()
            hir_rate = 3 * hir_flops / (time.perf_counter() - start)

            # The reference does the same useful work one example at a time, with three forward
            # passes (one a duplicate) and logits at every position: count only the useful FLOPs.
            optimizer = torch.optim.AdamW(policy.model.parameters(), lr=1e-5)
            reference_items = items[:16]
            start = time.perf_counter()
            for item in reference_items:
                public_code_hir_step(policy, optimizer, *_prompts(task, trainer, item))
            reference_rate = (
                hir_flops * len(reference_items) / len(items) / (time.perf_counter() - start)
            )
            results[f"{arch}-{size}"] = {"parameters": params, "hir_flops_per_second": hir_rate,
                                         "reference_flops_per_second": reference_rate, "matmul_peak": peak}  # fmt: skip
            rows.append(
                [
                    arch,
                    size,
                    f"{params / 1e6:.2f}M",
                    hir_rate / 1e9,
                    hir_rate / peak,
                    reference_rate / 1e9,
                    reference_rate / peak,
                ]
            )
    print_table(
        f"Ceiling: measured fp32 matmul peak {peak / 1e9:.1f} GFLOP/s (2048 x 2048); model FLOP/s of a training step",
        [
            "model",
            "size",
            "params",
            "hir GFLOP/s",
            "hir share of peak",
            "reference GFLOP/s",
            "reference share of peak",
        ],
        rows,
    )
    write_json("ceiling", {"matmul_peak_flops_per_second": peak, "results": results})


if __name__ == "__main__":
    main()
