"""A resumed run is the same run, data means what it says, and a user's file is code: each test
here failed before its fix (issue: "No command destroys what it did not make")."""

import json
import shutil
from pathlib import Path

import pytest

from hir.cli import main
from hir.runs.checkpoint import list_checkpoints
from hir.tasks import load_task

QUICK = ["--task", "synthetic/count", "--iterations", "1", "--max_new_tokens", "3",
         "--batch_size", "4", "--eval_limit", "4", "--num_samples", "2", "--report_to", "none",
         "--keep_checkpoints", "3"]  # fmt: skip


def train(model: str, folder: Path, *extra: str) -> int:
    return main(["train", "--model", model, *QUICK, "--num_examples", "16", "--output_dir", str(folder), *extra])  # fmt: skip


@pytest.fixture(scope="module")
def two_runs(tiny_gpt2_dir, tmp_path_factory) -> tuple[Path, Path]:
    """Two finished one-iteration runs of the same settings but the seed."""
    root = tmp_path_factory.mktemp("two-runs")
    for seed in (0, 1):
        assert train(tiny_gpt2_dir, root / f"seed-{seed}", "--seed", str(seed)) == 0
    return root / "seed-0", root / "seed-1"


def test_a_resume_over_other_data_is_refused_naming_the_setting(tiny_gpt2_dir, two_runs, tmp_path, capsys):  # fmt: skip
    run = tmp_path / "run"
    shutil.copytree(two_runs[0], run)
    argv = ["train", "--model", tiny_gpt2_dir, *QUICK, "--num_examples", "20", "--output_dir",
            str(run), "--seed", "0", "--iterations", "2", "--resume"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--resume with a different task_examples" in err
    assert "{'train': 12, 'validation': 0, 'test': 4}" in err and "{'train': 16, 'validation': 0, 'test': 4}" in err  # fmt: skip
    assert len(list_checkpoints(run / "checkpoints")) == 2  # nothing trained, nothing removed


def test_a_checkpoint_of_another_run_is_skipped_on_resume(
    tiny_gpt2_dir, two_runs, tmp_path, capsys
):
    run = tmp_path / "run"
    shutil.copytree(two_runs[0], run)
    swapped = run / "checkpoints" / "iteration-0001"
    shutil.rmtree(swapped)
    shutil.copytree(two_runs[1] / "checkpoints" / "iteration-0001", swapped)  # its manifest intact
    assert train(tiny_gpt2_dir, run, "--seed", "0", "--iterations", "2", "--resume") == 0
    captured = capsys.readouterr()
    assert "skipping checkpoint iteration-0001: it belongs to another run" in captured.err
    assert "(iteration 0)" in captured.out  # resumed from this run's own iteration 0


def test_export_skips_a_renamed_checkpoint(two_runs, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(two_runs[0], run)
    checkpoints = run / "checkpoints"
    (checkpoints / "iteration-0001").rename(checkpoints / "iteration-0007")
    assert main(["export", str(run), "--output_dir", str(tmp_path / "model")]) == 0
    err = capsys.readouterr().err
    assert "skipping checkpoint iteration-0007: its manifest says iteration 1" in err
    exported = json.loads((tmp_path / "model" / "config.json").read_text())
    source = json.loads((checkpoints / "iteration-0000" / "config.json").read_text())
    assert exported == source


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"query": "a", "answer": 1e400}', "record 0 has the number inf"),
        ('{"query": "a", "answer": NaN}', "record 0 has the number nan"),
        ('{"query": "a\\ud800", "answer": "1"}', "record 0 has text with an unpaired surrogate"),
    ],
)
def test_data_that_means_something_else_is_refused_naming_the_row(tmp_path, capsys, line, message):
    data = tmp_path / "data.jsonl"
    data.write_text(line + "\n")
    assert main(["train", "--model", "unused", "--task", f"jsonl:{data}", "--output_dir", str(tmp_path / "r")]) == 2  # fmt: skip
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_numeric_answers_are_compared_as_numbers(tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text('{"query": "half of 3", "answer": 1.5}\n{"query": "2 + 1", "answer": 3}\n')
    task = load_task(f"jsonl:{data}")
    half, three = task.examples
    assert task.score("1.5", half) == 1.0 and task.score("15", half) == 0.0  # not 1.5 -> "15"
    assert task.score("3.0", three) == 1.0 and task.score("three", three) == 0.0


USER_FILES = {
    "argparse": "import argparse\nparser = argparse.ArgumentParser()\nparser.add_argument('--lr', required=True)\nparser.parse_args()\n",
    "sys_exit": "import sys\nsys.exit(3)\n",
    "os_exit": "import os\nos._exit(0)\n",
}  # fmt: skip


@pytest.mark.parametrize("kind", list(USER_FILES))
def test_a_user_file_that_ends_the_process_at_import_is_one_line_naming_it(tmp_path, capsys, kind):
    path = tmp_path / f"{kind}.py"
    path.write_text(USER_FILES[kind] + "def feedback(output, example):\n    return 1.0\n")
    argv = ["train", "--model", "unused", "--task", "synthetic/count", "--feedback",
            f"{path}:feedback", "--output_dir", str(tmp_path / "r")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.strip()]
    assert line.startswith(f"hir: error: importing feedback module '{path}' ended the process")
    assert "unrecognized arguments" not in err  # hir's own command line is not the module's
