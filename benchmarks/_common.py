"""Shared by the benchmarks: the paper-length prompts, models built here, and table output."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import torch

from hir.models import load_policy
from hir.models.small_models import build_small_model, task_corpus
from hir.runs.versions import library_versions
from hir.tasks import load_task

SHARED_BIGBENCH = Path(__file__).resolve().parents[2] / "shared" / "bigbench"
TASK = "bigbench/tracking_shuffled_objects_three_objects"


def paper_task():
    """tracking_shuffled_objects three_objects (prompts of the paper's length); the BIG-bench
    folder comes from $HIR_BIGBENCH_DIR, ../shared/bigbench, or hir's download cache."""
    folder = os.environ.get("HIR_BIGBENCH_DIR") or (
        SHARED_BIGBENCH if SHARED_BIGBENCH.is_dir() else None
    )
    return load_task(TASK, bigbench_dir=folder)


def build_policy(arch: str, task, size: str = "small", seed: int = 0):
    folder = tempfile.mkdtemp(prefix=f"hir-bench-{arch}-")
    build_small_model(arch, task_corpus(task), folder, size=size, vocab_size=2000, seed=seed)
    policy = load_policy(folder)
    return policy, sum(p.numel() for p in policy.model.parameters())


def machine() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"


def print_table(title: str, columns: list[str], rows: list[list]) -> None:
    print(f"\n{title}\n")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row) + " |")


def write_json(name: str, payload: dict) -> Path:
    out = Path(os.environ.get("HIR_BENCH_DIR", "benchmarks/results"))
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    payload = {
        **payload,
        "machine": machine(),
        "command": " ".join(sys.argv),
        "versions": library_versions(),
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {path}")
    return path


def real_model_parser(doc: str, queries: int) -> argparse.ArgumentParser:
    """The options of the benchmarks of one HIR iteration on a real pretrained model."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--task", default="logical_deduction_three_objects")
    parser.add_argument("--bigbench_dir", default=None)
    parser.add_argument("--queries", type=int, default=queries)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--batch_size", type=int, default=16)
    return parser
