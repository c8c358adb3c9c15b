import json
from types import SimpleNamespace

import pytest

from hir import HIRError
from hir.cli import main
from hir.online.evaluate import commonest, evaluate
from hir.tasks import load_task

END = 0


class ScriptedPolicy:
    """Answers correctly for every other example, in two tokens and its end token; the others
    "wrong", cut at max_new_tokens: a stand-in whose accuracy we know."""

    chat = False  # the plain prompt format
    format = SimpleNamespace(end_token_id=END)

    def __init__(self, task):
        self.answers = {task.prompt(e.query): e.target for e in task.examples}
        self.calls = []

    def generate(self, prompts, max_new_tokens, batch_size, progress=None, return_token_ids=False):
        self.calls.append(len(prompts))
        outputs = [(self.answers[p], (7, 8, END)) if i % 2 == 0 else ("wrong", (9,) * max_new_tokens)
                   for i, p in enumerate(prompts)]  # fmt: skip
        return [[o if return_token_ids else o[0]] for o in outputs]


def test_accuracy_counts_correct_outputs_on_the_test_split():
    task = load_task("synthetic/count", num_examples=100)
    result = evaluate(ScriptedPolicy(task), task)
    assert result.num_examples == 20
    assert result.accuracy == pytest.approx(0.5)
    assert [r["id"] for r in result.records] == [e.id for e in task.split("test")]
    assert {r["score"] for r in result.records} == {0.0, 1.0}
    # Half the outputs are "wrong": the commonest answer, given to half the queries.
    assert (result.commonest_answer, result.commonest_answer_share) == ("wrong", 0.5)
    assert result.summary()["commonest_answer_share"] == 0.5
    # The "wrong" half ran to max_new_tokens without the model's end token: cut.
    assert [r["new_tokens"] for r in result.records[:2]] == [3, 32]
    assert result.summary()["cut_at_max_new_tokens"] == 0.5


def test_commonest_is_the_most_frequent_value_and_its_share_first_seen_on_ties():
    assert commonest(["1", "3", "1", "2"]) == ("1", 0.5)
    assert commonest(["3", "1", "1", "3"]) == ("3", 0.5)
    assert commonest([]) == (None, None)


@pytest.mark.parametrize("arch", ["gpt2", "t5"])
def test_hir_eval_with_a_built_saved_and_reloaded_model(arch, tmp_path, capsys):
    model_dir, out = tmp_path / arch, tmp_path / "eval"
    task_args = ["--task", "synthetic/count", "--num-examples", "100"]
    assert (
        main(
            [
                "build-model",
                "--arch",
                arch,
                "--output-dir",
                str(model_dir),
                "--vocab-size",
                "400",
                *task_args,
            ]
        )
        == 0
    )
    assert (model_dir / "config.json").is_file()
    assert (
        main(
            [
                "eval",
                "--model",
                str(model_dir),
                "--output-dir",
                str(out),
                "--max-new-tokens",
                "4",
                *task_args,
            ]
        )
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    predictions = (out / "predictions.jsonl").read_text().splitlines()
    assert len(predictions) == summary["num_examples"] == 20
    assert 0.0 <= summary["accuracy"] <= 1.0
    assert summary["config"]["seed"] == 0 and summary["config"]["model"] == str(model_dir)
    assert summary["versions"]["torch"] and summary["versions"]["transformers"]
    assert set(json.loads(predictions[0])) == {
        "id",
        "prompt",
        "prediction",
        "answer",
        "target",
        "new_tokens",
        "cut",
        "score",
    }
    assert "accuracy" in capsys.readouterr().out


def test_hir_eval_premise_decodes_under_both_instructions(tiny_gpt2_dir, tmp_path, capsys):
    common = ["--model", tiny_gpt2_dir, "--task", "synthetic/count", "--max_new_tokens", "4"]
    assert main(["eval", *common, "--output_dir", str(tmp_path / "plain")]) == 0
    assert (
        main(["eval", *common, "--output_dir", str(tmp_path / "premise"), "--premise", "true"]) == 0
    )
    premise = json.loads((tmp_path / "premise" / "premise.json").read_text())
    plain = json.loads((tmp_path / "plain" / "summary.json").read_text())
    # The correct-answer half is the ordinary greedy evaluation.
    assert premise["accuracy_correct_instruction"] == plain["accuracy"]
    assert premise["examples"] == plain["num_examples"]
    assert 0.0 <= premise["same_answer_share"] <= 1.0
    predictions = [json.loads(line) for line in (tmp_path / "plain" / "predictions.jsonl").read_text().splitlines()]  # fmt: skip
    top = premise["top_answers_correct_instruction"]
    assert sum(top.values()) <= premise["examples"]
    assert all(
        count == sum(p["answer"] == answer for p in predictions) for answer, count in top.items()
    )
    assert premise["config"]["model"] == tiny_gpt2_dir and premise["versions"]["torch"]
    assert "under the wrong-answer one" in capsys.readouterr().out
    # One line, not a silent choice of instruction, when both are asked for.
    assert main(["eval", *common, "--premise", "true", "--instruction", "x"]) == 2
    assert "leave --instruction out" in capsys.readouterr().err


def test_eval_every_evaluates_start_every_nth_and_last_and_leaves_training_unchanged(
    tiny_gpt2_dir, tmp_path
):
    from hir.runs.fileio import read_jsonl
    from hir.trainers.hir import HIRConfig, HIRTrainer

    task = load_task("synthetic/sort", num_examples=40)
    settings = dict(iterations=3, batch_size=16, max_new_tokens=4, max_queries_per_iteration=6,
                    report_to="none", seed=0)  # fmt: skip
    runs = {}
    for every in (1, 2):
        folder = tmp_path / f"every-{every}"
        config = HIRConfig(output_dir=str(folder), eval_every=every, **settings)
        summary = HIRTrainer(tiny_gpt2_dir, task, config).train()
        runs[every] = (summary, list(read_jsonl(folder / "metrics.jsonl")))
    (dense, dense_log), (sparse, sparse_log) = runs[1], runs[2]
    assert [i for i, r in enumerate(sparse_log) if "accuracy" in r] == [0, 2, 3]
    assert sparse["accuracy_per_iteration"][1] is None
    assert sparse["final_accuracy"] == dense["final_accuracy"]
    # Evaluating draws no randomness: the training path is the same with or without it.
    for a, b in zip(dense_log[1:], sparse_log[1:], strict=True):
        assert a["sample_accuracy"] == b["sample_accuracy"] and a["loss"] == b["loss"]
        assert [e["output"] for e in a["examples"]] == [e["output"] for e in b["examples"]]
    with pytest.raises(HIRError, match="eval_every must be >= 1"):
        HIRConfig(output_dir=str(tmp_path / "bad"), eval_every=0)
