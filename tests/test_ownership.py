"""No command deletes or rewrites a file it did not create: every command that writes, pointed at
a folder of someone else's files (the user's, a model's, another command's results), refuses in
one line naming what is there, before any work, and leaves every file as it was."""

import hashlib
import json
import os
import shutil
import socket
from pathlib import Path

import pytest

from hir.cli import main
from hir.errors import HIRError
from hir.runs.folders import check_folder, mark_folder, occupant
from hir.runs.lock import LOCK_NAME, folder_lock, process_start_time

QUICK = ["--task", "synthetic/count", "--num_examples", "16", "--iterations", "1",
         "--max_new_tokens", "3", "--batch_size", "4", "--eval_limit", "4", "--num_samples", "2",
         "--report_to", "none"]  # fmt: skip


def snapshot(folder: Path) -> dict[str, str]:
    """Every file and folder under `folder` with its content's hash: what must not change."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}  # fmt: skip


def writing_commands(model: str, target: Path, run: Path) -> dict[str, list[str]]:
    """Every `hir` command that writes a folder, aimed at `target` (`run`: a finished run)."""
    out = ["--output_dir", str(target)]
    return {
        "train": ["train", "--model", model, *QUICK, *out],
        "train --overwrite_output_dir": ["train", "--model", model, *QUICK, *out, "--overwrite_output_dir"],
        "train --resume": ["train", "--model", model, *QUICK, *out, "--resume"],
        "demo": ["demo", *out, "--iterations", "1"],
        "compare": ["compare", "--model", model, *QUICK, "--methods", "start,farl", "--seeds", "0", *out],
        "compare --overwrite_output_dir": ["compare", "--model", model, *QUICK, "--methods", "start",
                                           "--seeds", "0", *out, "--overwrite_output_dir"],
        "compare --resume": ["compare", "--model", model, *QUICK, "--methods", "start", "--seeds", "0",
                             *out, "--resume"],
        "instructgpt": ["instructgpt", "--model", model, *QUICK, "--sft_iterations", "1", *out],
        "eval": ["eval", "--model", model, "--task", "synthetic/count", "--limit", "2", *out],
        "screen": ["screen", "--model", model, "--tasks", "synthetic/count", "--limit", "2", *out],
        "warm-up": ["warm-up", "--model", model, "--tasks", "synthetic/sort", "--targets",
                    "synthetic/count", *out, "--overwrite_output_dir"],
        "export": ["export", str(run), *out, "--overwrite_output_dir"],
        "build-model": ["build-model", "--task", "synthetic/count", *out, "--overwrite_output_dir"],
    }  # fmt: skip


@pytest.fixture(scope="module")
def finished_run(tiny_gpt2_dir, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("finished") / "run"
    assert main(["train", "--model", tiny_gpt2_dir, *QUICK, "--output_dir", str(folder)]) == 0
    return folder


def occupied_folders(tmp: Path, model: str, run: Path) -> dict[str, tuple[Path, str]]:
    """(folder, what the refusal must name) for each kind of someone else's folder."""
    users = tmp / "users"
    (users / "data").mkdir(parents=True)
    (users / "notes.txt").write_text("mine")
    (users / "data" / "table.csv").write_text("a,b\n1,2\n")
    a_model = tmp / "a-model"
    shutil.copytree(model, a_model)
    evaluation = tmp / "evaluation"
    evaluation.mkdir()
    mark_folder(evaluation, "evaluation", "hir eval")
    (evaluation / "predictions.jsonl").write_text('{"id": 0}\n')
    a_run = tmp / "a-run"
    shutil.copytree(run, a_run)
    return {
        "user's files": (users, "files hir did not write ('data', 'notes.txt')"),
        "a model": (a_model, "a model (config.json)"),
        "an evaluation": (evaluation, "a hir evaluation"),
        "a training run": (a_run, "a hir training run"),
    }


def test_no_writing_command_touches_a_folder_of_someone_elses_files(
    tiny_gpt2_dir, finished_run, tmp_path, capsys
):
    failures = []
    for kind, (folder, named) in occupied_folders(tmp_path, tiny_gpt2_dir, finished_run).items():
        before = snapshot(folder)
        for name, argv in writing_commands(tiny_gpt2_dir, folder, finished_run).items():
            if (kind, name.split()[0]) in (("a training run", "train"), ("an evaluation", "eval")):
                continue  # the same kind: resumed, started over or redone, as asked
            code = main(argv)
            err = capsys.readouterr().err
            lines = [line for line in err.splitlines() if line.startswith("hir: error:")]
            if code != 2 or len(lines) != 1 or named not in lines[0]:
                failures.append((kind, name, code, err[-300:]))
            if snapshot(folder) != before:
                failures.append((kind, name, "changed the folder"))
                break
    assert not failures, failures


def test_train_into_its_own_model_folder_is_refused_and_the_model_still_loads(
    tiny_gpt2_dir, tmp_path, capsys
):
    model = tmp_path / "model"
    shutil.copytree(tiny_gpt2_dir, model)
    before = snapshot(model)
    argv = ["train", "--model", str(model), *QUICK, "--output_dir", str(model)]
    assert main(argv) == 2
    assert "holds a model (config.json)" in capsys.readouterr().err
    assert snapshot(model) == before


def test_the_demo_starts_over_only_a_folder_its_own_earlier_run_made(tmp_path):
    own = tmp_path / "demo"
    mark_folder(own, "run", "hir demo")
    (own / "metrics.jsonl").write_text("{}\n")
    assert check_folder(own, "run", made_by="hir demo").made_by == "hir demo"
    trained = tmp_path / "trained"
    mark_folder(trained, "run", "hir train --method hir")
    with pytest.raises(HIRError, match=r"holds a hir training run \(made by hir train --method hir\), not a hir training run of `hir demo`"):  # fmt: skip
        check_folder(trained, "run", made_by="hir demo")


def test_folders_written_before_markers_are_known_by_their_files(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"config": {}, "versions": {}}))
    comparison = tmp_path / "comparison"
    (comparison / "hir" / "seed-0").mkdir(parents=True)
    screen = tmp_path / "screen"
    screen.mkdir()
    (screen / "screen.json").write_text("{}")
    assert [occupant(f).kind for f in (run, comparison, screen)] == ["run", "comparison", "screen"]
    # A lock or a temporary file left by a killed write does not make a folder someone's.
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / LOCK_NAME).write_text("{}")
    (bare / ".summary.json.abc.tmp").write_text("")
    assert occupant(bare) is None


def test_a_comparison_is_continued_or_started_over_only_when_asked(tiny_gpt2_dir, tmp_path, capsys):
    folder = tmp_path / "comparison"
    argv = ["compare", "--model", tiny_gpt2_dir, *QUICK, "--methods", "start", "--seeds", "0",
            "--output_dir", str(folder)]  # fmt: skip
    assert main(argv) == 0
    before = snapshot(folder)
    assert main(argv) == 2
    assert "pass --resume to continue it, --overwrite_output_dir to start it over" in capsys.readouterr().err  # fmt: skip
    assert snapshot(folder) == before
    assert main([*argv, "--resume"]) == 0


def test_export_into_the_current_folder_is_refused_and_leaves_nothing(
    finished_run, tmp_path, monkeypatch, capsys
):
    here = tmp_path / "here"
    here.mkdir()
    mark_folder(here, "model", "hir export")  # even a model folder hir wrote
    monkeypatch.chdir(here)
    before = snapshot(tmp_path)
    for target in (".", str(tmp_path)):
        assert (
            main(["export", str(finished_run), "--output_dir", target, "--overwrite_output_dir"])
            == 2
        )
        assert "is the current folder or holds it" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


def test_a_lock_whose_pid_now_belongs_to_another_process_is_taken_over(tmp_path, capsys):
    """The pid of a dead holder, taken by an unrelated live process (here: this test's parent),
    no longer holds the folder: its process started at another time."""
    parent = os.getppid()
    lock = {"pid": parent, "host": socket.gethostname(), "started": "then",
            "process_started": process_start_time(parent) - 3600.0}  # fmt: skip
    (tmp_path / LOCK_NAME).write_text(json.dumps(lock))
    with folder_lock(tmp_path):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert f"the lock of process {parent}, which is gone" in capsys.readouterr().err
    # The same pid with its own start time is the live holder: refused.
    (tmp_path / LOCK_NAME).write_text(json.dumps({**lock, "process_started": process_start_time(parent)}))  # fmt: skip
    with pytest.raises(HIRError, match=f"in use by another hir process \\(pid {parent}"), folder_lock(tmp_path):  # fmt: skip
        pass
