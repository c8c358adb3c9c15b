import json
import sys
import tempfile

import pytest

from hir.cli import main


def test_tasks_list_names_the_builtins(capsys):
    assert main(["tasks", "list"]) == 0
    out = capsys.readouterr().out
    assert "bigbench/tracking_shuffled_objects_three_objects" in out and "synthetic/count" in out


def test_tasks_export_writes_prompts_and_targets(bigbench_dir, tmp_path):
    target = tmp_path / "train.jsonl"
    args = ["tasks", "export", "bigbench/object_counting", "--bigbench-dir", str(bigbench_dir)]
    assert main([*args, "--split", "test", "--output", str(target)]) == 0
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(rows) == 1  # 2 examples: int(0.8 * 2) = 1 train, 1 test
    assert rows[0]["prompt"].startswith("Solve the question with correct answer.\n\nQ: ")
    assert rows[0]["prompt"].endswith("\nA:")
    assert rows[0]["target"] in {"3", "1"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["eval", "--model", "/no/such/model", "--task", "synthetic/count"],
            "model path '/no/such/model' does not exist",
        ),
        (["tasks", "export", "no/such-task"], "unknown task 'no/such-task'"),
        (
            ["tasks", "export", "synthetic/count", "--feedback", "x"],
            "not of the form module:function",
        ),
    ],
)
def test_bad_input_is_one_line_on_stderr_with_exit_code_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_bad_task_file_through_the_cli(tmp_path, capsys):
    (tmp_path / "object_counting").mkdir()
    (tmp_path / "object_counting" / "task.json").write_text("not json")
    assert (
        main(["tasks", "export", "bigbench/object_counting", "--bigbench-dir", str(tmp_path)]) == 2
    )
    assert "is not valid JSON" in capsys.readouterr().err


def test_a_closed_output_pipe_ends_quietly_without_an_error_log(tmp_path, monkeypatch, capsys):
    class ClosedPipe:  # as stdout is once `hir ... | head` has read its lines
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            pass

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["tasks", "list"]) == 141
    assert capsys.readouterr().err == ""
    assert not list(tmp_path.glob("hir-error-*.log"))
