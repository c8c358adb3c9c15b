"""Every command that writes keeps the same promise: it checks its input and its target first,
writes into a staging folder it made itself, never deletes what it did not create, holds one
lock per run folder, and every way out says why in one line."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import outcome, train

from hir.cli import main
from hir.runs.checkpoint import checkpoint_problem, list_checkpoints
from hir.runs.lock import LOCK_NAME, folder_lock

QUICK = ["--task", "synthetic/count", "--num_examples", "16", "--iterations", "1",
         "--max_new_tokens", "3", "--batch_size", "4", "--eval_limit", "4", "--num_samples", "2",
         "--report_to", "none"]  # fmt: skip


def quick_run(model: str, output_dir: Path, *extra: str) -> int:
    return main(["train", "--model", model, *QUICK, "--output_dir", str(output_dir), *extra])


def test_export_never_deletes_a_folder_it_did_not_create(tiny_gpt2_dir, tmp_path):
    assert quick_run(tiny_gpt2_dir, tmp_path / "run") == 0
    users = tmp_path / "exp" / ".model.tmp"  # the name the old export staged under
    users.mkdir(parents=True)
    (users / "notes.txt").write_text("mine")
    assert main(["export", str(tmp_path / "run"), "--output_dir", str(tmp_path / "exp" / "model")]) == 0  # fmt: skip
    assert (users / "notes.txt").read_text() == "mine"
    assert (tmp_path / "exp" / "model" / "model.safetensors").is_file()
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == [".model.tmp", "model"]


def test_export_refuses_a_damaged_checkpoint(tiny_gpt2_dir, tmp_path, capsys):
    assert quick_run(tiny_gpt2_dir, tmp_path / "run", "--keep_checkpoints", "1") == 0
    (checkpoint,) = list_checkpoints(tmp_path / "run" / "checkpoints")
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    assert main(["export", str(tmp_path / "run"), "--output_dir", str(tmp_path / "model")]) == 2
    assert "no intact checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "model").exists()


def test_commands_that_write_a_folder_refuse_a_non_empty_one(tiny_gpt2_dir, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "data.txt").write_text("mine")
    commands = [
        ["warm-up", "--model", tiny_gpt2_dir, "--tasks", "synthetic/sort", "--targets",
         "synthetic/count", "--output_dir", str(taken)],
        ["build-model", "--task", "synthetic/count", "--output_dir", str(taken)],
    ]  # fmt: skip
    for command in commands:
        for overwrite in ([], ["--overwrite_output_dir"]):  # the user's files: never replaced
            assert main([*command, *overwrite]) == 2, command[0]
            assert "holds files hir did not write ('data.txt')" in capsys.readouterr().err
            assert sorted(p.name for p in taken.iterdir()) == ["data.txt"]
    built = tmp_path / "built"
    assert main(["build-model", "--task", "synthetic/count", "--output_dir", str(built)]) == 0
    assert main(["build-model", "--task", "synthetic/count", "--output_dir", str(built)]) == 2
    assert (
        "holds a model folder written by hir (made by hir build-model)" in capsys.readouterr().err
    )
    assert main(["build-model", "--task", "synthetic/count", "--output_dir", str(built), "--overwrite_output_dir"]) == 0  # fmt: skip
    assert (built / "config.json").is_file()
    assert not [p for p in tmp_path.iterdir() if ".staging-" in p.name or ".replaced-" in p.name]


def test_a_second_writer_is_refused_and_a_dead_writers_lock_taken_over(tiny_gpt2_dir, tmp_path, capsys):  # fmt: skip
    out = tmp_path / "run"
    other = os.getppid()  # a live process of this machine, as another writer would be
    out.mkdir()
    (out / LOCK_NAME).write_text(json.dumps({"pid": other, "host": os.uname().nodename, "started": "now"}))  # fmt: skip
    assert quick_run(tiny_gpt2_dir, out) == 2
    err = capsys.readouterr().err
    assert f"pid {other}" in err and "in use by another hir process" in err
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing written
    (out / LOCK_NAME).unlink()
    # The process that holds a folder may take it again (a comparison's run, then its trainer):
    # the outer hold releases it.
    with folder_lock(out):
        with folder_lock(out):
            pass
        assert json.loads((out / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert not (out / LOCK_NAME).exists()
    # A lock that names this process but that it does not hold: left by an earlier process of
    # the same pid, taken over (a wait for it would never end).
    (out / LOCK_NAME).write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename, "started": "then"}))  # fmt: skip
    capsys.readouterr()
    with folder_lock(out, wait=True):
        pass
    assert f"the lock of process {os.getpid()}, which is gone" in capsys.readouterr().err
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    lock = json.loads(
        json.dumps({"pid": int(dead), "host": os.uname().nodename, "started": "then"})
    )
    (out / LOCK_NAME).write_text(json.dumps(lock))
    assert quick_run(tiny_gpt2_dir, out) == 0
    assert f"the lock of process {dead}, which is gone" in capsys.readouterr().err
    assert not (out / LOCK_NAME).exists()


def test_a_user_function_that_exits_is_one_line_naming_it(tiny_gpt2_dir, tmp_path, capsys):
    (tmp_path / "quits.py").write_text("import sys\n\ndef feedback(answer, example):\n    sys.exit(0)\n")  # fmt: skip
    code = quick_run(tiny_gpt2_dir, tmp_path / "run", "--feedback", f"{tmp_path / 'quits.py'}:feedback")  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "quits:feedback raised SystemExit" in err[0]
    assert not (tmp_path / "run").exists()  # checked before anything was written


def test_a_model_that_does_not_fit_its_config_is_refused(tiny_gpt2_dir, tiny_t5_dir, tmp_path, capsys):  # fmt: skip
    mixed = tmp_path / "mixed"
    shutil.copytree(tiny_gpt2_dir, mixed)
    shutil.copy(Path(tiny_t5_dir) / "config.json", mixed / "config.json")
    assert quick_run(str(mixed), tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert "do not fit its config" in err and "missing" in err and "--allow_new_weights" in err


def test_user_data_with_an_empty_answer_and_repeated_seeds_are_refused(tmp_path, capsys):
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"query": "q1", "answer": "a"}) + "\n" + json.dumps({"query": "q2", "answer": " "}) + "\n")  # fmt: skip
    assert main(["tasks", "export", f"jsonl:{data}"]) == 2
    assert "record 1 has an empty 'query' or 'answer'" in capsys.readouterr().err
    assert main(["compare", "--model", "x", "--seeds", "0,0"]) == 2
    assert "repeats a seed" in capsys.readouterr().err
    assert main(["compare", "--model", "x", "--screen_trained", "-1"]) == 2
    assert "--screen_trained must be >= 0 (0 = off), got -1" in capsys.readouterr().err


def test_a_full_disk_is_one_line_leaves_no_staging_and_resumes(tiny_gpt2_dir, tmp_path, monkeypatch, capsys):  # fmt: skip
    from hir.trainers import loop

    unbroken = tmp_path / "unbroken"
    assert quick_run(tiny_gpt2_dir, unbroken, "--iterations", "2") == 0
    real, calls = loop.save_training_state, []

    def full_disk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the checkpoint of iteration 1
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "save_training_state", full_disk)
    out = tmp_path / "full"
    assert quick_run(tiny_gpt2_dir, out, "--iterations", "2") == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "No space left on device" in err and "the traceback is in" in err
    assert Path(err.split("the traceback is in ")[1].split(";")[0]).is_file()
    checkpoints = out / "checkpoints"
    assert not [p for p in checkpoints.iterdir() if p.name.startswith(".")]  # no staging left
    (kept,) = list_checkpoints(checkpoints)
    assert kept.name == "iteration-0000" and checkpoint_problem(kept) is None
    monkeypatch.setattr(loop, "save_training_state", real)
    assert quick_run(tiny_gpt2_dir, out, "--iterations", "2", "--resume") == 0
    summary = [json.loads((d / "summary.json").read_text()) for d in (unbroken, out)]
    assert summary[0]["accuracy_per_iteration"] == summary[1]["accuracy_per_iteration"]
    assert (unbroken / "buffer.jsonl").read_bytes() == (out / "buffer.jsonl").read_bytes()


@pytest.mark.slow  # starts a process and signals it
def test_sigterm_stops_in_one_line_and_resume_continues(tiny_gpt2_dir, tmp_path):
    unbroken = train(tiny_gpt2_dir, "hir", tmp_path / "unbroken")
    assert unbroken.returncode == 0, unbroken.stderr[-2000:]
    os.environ["HIR_CRASH_SIGNAL"] = "TERM"
    try:
        stopped = train(tiny_gpt2_dir, "hir", tmp_path / "stopped", crash_at="training:3")
    finally:
        del os.environ["HIR_CRASH_SIGNAL"]
    assert stopped.returncode == 128 + signal.SIGTERM
    assert stopped.stderr.strip().splitlines()[-1].startswith("hir: terminated (SIGTERM)")
    assert not (tmp_path / "stopped" / LOCK_NAME).exists()  # released on the way out
    resumed = train(tiny_gpt2_dir, "hir", tmp_path / "stopped", "--resume", "true")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert outcome(tmp_path / "stopped") == outcome(tmp_path / "unbroken")


def test_an_output_folder_on_a_symlink_loop_is_one_line(tiny_gpt2_dir, tmp_path, capsys):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    assert quick_run(tiny_gpt2_dir, tmp_path / "a" / "run") == 2
    assert "symbolic link that leads nowhere" in capsys.readouterr().err


def test_instructgpt_with_a_bad_feedback_writes_nothing(tiny_gpt2_dir, tmp_path, capsys):
    (tmp_path / "bad.py").write_text("def feedback(answer, example):\n    return 'yes'\n")
    out = tmp_path / "pipeline"
    code = main(["instructgpt", "--model", tiny_gpt2_dir, *QUICK, "--feedback",
                 f"{tmp_path / 'bad.py'}:feedback", "--output_dir", str(out)])  # fmt: skip
    assert code == 2
    assert "returned str 'yes'" in capsys.readouterr().err
    assert not out.exists()  # the SFT stage wrote nothing before the error
