"""The instruction warm-up: both instructions on other tasks, never the target's labels."""

import json

from hir.cli import main
from hir.models import load_policy
from hir.recipes.warmup import WarmupSettings, warmup_pairs
from hir.tasks import load_task


def test_pairs_teach_both_instructions_with_outputs_the_feedback_scores_accordingly():
    task = load_task("synthetic/count", num_examples=60)
    pairs = warmup_pairs([task], WarmupSettings(examples_per_task=20), chat=False)
    correct = [(p, o) for p, o in pairs if task.correct_instruction in p]
    wrong = [(p, o) for p, o in pairs if task.wrong_instruction in p]
    assert len(correct) == 20 and len(wrong) == 20
    by_prompt = {task.prompt(e.query, task.wrong_instruction): e for e in task.split("train")}
    for prompt, output in wrong:
        assert task.score(output, by_prompt[prompt]) == 0.0


def test_warm_up_writes_a_model_and_the_premise_before_and_after(
    tiny_llama_chat_dir, tmp_path, capsys
):
    out = tmp_path / "warm"
    argv = ["warm-up", "--model", tiny_llama_chat_dir, "--tasks", "synthetic/sort",
            "--targets", "synthetic/count", "--output_dir", str(out), "--examples_per_task", "8",
            "--epochs", "1", "--premise_limit", "4", "--train_last_layers", "1"]  # fmt: skip
    assert main(argv) == 0
    record = json.loads((out / "warmup.json").read_text())
    assert record["pairs"] == 16 and record["targets"] == ["synthetic/count"]
    roles = [(r["task"], r["role"]) for r in record["premise_after"]]
    assert roles == [("synthetic/sort", "warm-up"), ("synthetic/count", "target")]
    assert "same answer" in capsys.readouterr().out
    assert load_policy(str(out)).chat  # an ordinary folder, chat template kept


def test_the_target_is_refused_among_the_warm_up_tasks(tiny_llama_chat_dir, tmp_path, capsys):
    argv = ["warm-up", "--model", tiny_llama_chat_dir, "--tasks", "synthetic/count",
            "--targets", "synthetic/count", "--output_dir", str(tmp_path / "w")]  # fmt: skip
    assert main(argv) == 2
    assert "both a warm-up task and a target" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()
