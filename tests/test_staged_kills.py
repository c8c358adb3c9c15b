"""A command that writes a folder, killed (SIGKILL) between writing its staging folder and
renaming it into place, leaves nothing at the target and the next call completes: the crash
point `staged` (hir/runs/crash_points.py) sits in `hir.runs.staging.staged_folder`. (`hir models
fetch`: test_model_sources.py, with the one conversion of the shared GGUF.)"""

from pathlib import Path

import pytest
from helpers import hir, killed_before_its_rename

from hir.cli import main

# Starts processes (`make test-all`; `make test` leaves it out).
pytestmark = pytest.mark.slow


def killed_then_completed(args: list[str], target: Path) -> None:
    killed_before_its_rename(args, target)
    again = hir(args)
    assert again.returncode == 0, again.stderr[-2000:]
    assert (target / "config.json").is_file()


def test_build_model_killed_before_its_rename(tmp_path):
    target = tmp_path / "model"
    killed_then_completed(["build-model", "--task", "synthetic/count", "--output_dir", str(target)], target)  # fmt: skip


def test_export_merge_killed_before_its_rename(tiny_gpt2_dir, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--model", tiny_gpt2_dir, "--task", "synthetic/count", "--num_examples", "16",
                 "--iterations", "1", "--max_new_tokens", "3", "--batch_size", "4", "--eval_limit", "4",
                 "--num_samples", "2", "--report_to", "none", "--lora_r", "4",
                 "--output_dir", str(run)]) == 0  # fmt: skip
    target = tmp_path / "merged"
    killed_then_completed(["export", str(run), "--output_dir", str(target), "--merge"], target)
    assert (target / "model.safetensors").is_file()


def test_warm_up_killed_before_its_rename(tiny_gpt2_dir, tmp_path):
    target = tmp_path / "warm"
    killed_then_completed(["warm-up", "--model", tiny_gpt2_dir, "--tasks", "synthetic/sort",
                           "--targets", "synthetic/count", "--examples_per_task", "8", "--epochs", "1",
                           "--premise_limit", "4", "--output_dir", str(target)], target)  # fmt: skip
    assert (target / "warmup.json").is_file()
