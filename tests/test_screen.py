"""`hir screen`: the numbers of a row against their definitions, the reading, resume."""

import json
from collections import Counter

import pytest

from hir import HIRError
from hir.cli import main
from hir.models.loading import load_policy
from hir.online.sampling import Sample
from hir.recipes import screen as screen_module
from hir.recipes.screen import (
    ScreenSettings,
    constant_answer,
    instruction_margins,
    reading,
    sampling_summary,
    screen,
)
from hir.tasks import load_task
from hir.tasks.example import Example

TASK = load_task("synthetic/sort", num_examples=60, validation_fraction=0.2)
SETTINGS = ScreenSettings(limit=6, num_samples=3, max_new_tokens=6, batch_size=8)


def test_a_rows_numbers_follow_their_definitions(tiny_gpt2_dir, tmp_path):
    policy = load_policy(tiny_gpt2_dir)
    (row,) = screen(policy, [("sort", TASK)], SETTINGS, tmp_path, {"model": tiny_gpt2_dir})
    examples = TASK.split("validation")[:6]
    assert row["examples"] == 6
    assert row["constant_answer_share"] == constant_answer(examples)[1]
    assert row["chance"] is None  # not multiple choice
    assert 1 <= row["distinct_samples_per_query"] <= 3
    assert 0 <= row["sample_accuracy"] <= row["pass_at_k"] <= 1
    # separation is the margin seen from each sample's own (hindsight) instruction.
    saved = json.loads((tmp_path / "screen.json").read_text())
    assert saved["rows"][0]["reading"] == row["reading"] and "torch" in saved["versions"]
    assert row["reading"].startswith("premise ")
    assert (tmp_path / "screen.md").read_text().count("\n") == 3


def test_a_sampling_grid_adds_each_settings_numbers(tiny_gpt2_dir, tmp_path):
    policy = load_policy(tiny_gpt2_dir)
    settings = ScreenSettings(limit=4, num_samples=2, max_new_tokens=4, batch_size=8,
                              sampling_grid="1.0/1.0, 0.5/0.9")  # fmt: skip
    (row,) = screen(policy, [("sort", TASK)], settings, tmp_path, {"model": tiny_gpt2_dir})
    first, second = row["sampling_grid"]
    assert (first["temperature"], first["top_p"], second["temperature"], second["top_p"]) == (
        1.0,
        1.0,
        0.5,
        0.9,
    )
    # The grid's 1.0/1.0 is the main setting, seeded alike: the same samples, the same numbers.
    for key in (
        "pass_at_k",
        "sample_accuracy",
        "well_formed_samples",
        "distinct_samples_per_query",
    ):
        assert first[key] == row[key]
    assert "T 0.5 top-p 0.9" in (tmp_path / "screen.md").read_text()
    with pytest.raises(HIRError, match="TEMPERATURE/TOP_P"):
        ScreenSettings(sampling_grid="hot/0.9")
    with pytest.raises(HIRError, match="top_p 1.5"):
        ScreenSettings(sampling_grid="0.7/1.5")


def test_the_commonest_right_answer_and_its_share_of_the_right_samples():
    examples = [Example(f"q{i}", f"query {i}", target) for i, target in enumerate("1123")]
    answers = {"q0": "12", "q1": "11", "q2": "22", "q3": "45"}  # each query's two samples
    samples = [Sample(0, e.id, "x", a, float(a == e.target), answer=a)
               for e in examples for a in answers[e.id]]  # fmt: skip
    task = load_task("synthetic/count", num_examples=8)
    summary = sampling_summary(task, examples, samples)
    # Right: q0's "1", q1's two "1"s, q2's two "2"s; q3 none.
    assert summary["pass_at_k"] == 3 / 4
    # Some right and some wrong: q0 only (q1 and q2 all right, q3 all wrong).
    assert summary["learnable_share"] == 1 / 4
    assert summary["sample_accuracy"] == 5 / 8
    assert (summary["top_right_answer"], summary["top_right_answer_share"]) == ("1", 3 / 5)
    none_right = [Sample(0, "q3", "x", "9", 0.0, answer="9")]
    assert sampling_summary(task, examples, none_right)["top_right_answer_share"] is None


def test_margins_are_the_two_instructions_score_difference(tiny_gpt2_dir):
    policy = load_policy(tiny_gpt2_dir)
    task = TASK.for_format(policy.chat)
    example = task.split("validation")[0]
    samples = [Sample(0, example.id, "x", output, 0.0) for output in ("apple kiwi", "pear")]
    margins = instruction_margins(policy, task, [example], samples, batch_size=1)
    for sample, margin in zip(samples, margins):
        scores = []
        for instruction in (task.correct_instruction, task.wrong_instruction):
            statistics = policy.statistics_for([task.prompt(example.query, instruction)],
                                               [sample.output])  # fmt: skip
            scores.append((statistics.logprob.sum() / statistics.mask.sum()).item())
        assert margin == pytest.approx(scores[0] - scores[1], abs=1e-5)


ROW = {"accuracy_correct_instruction": 0.6, "accuracy_wrong_instruction": 0.2,
       "same_answer_share": 0.3, "separation": 0.05, "separated_share": 0.7,
       "well_formed_samples": 0.9, "pass_at_k": 0.5, "constant_answer": "(A)",
       "constant_answer_share": 0.3, "chance": None, "sample_accuracy": 0.3}  # fmt: skip


@pytest.mark.parametrize(
    "change, expected",
    [
        ({}, "premise present (gap +0.40"),
        ({"separation": -0.01}, "premise weak"),
        ({"accuracy_wrong_instruction": 0.58, "separated_share": 0.4}, "premise absent"),
        ({}, "learnable from its own samples (pass@4 0.50)"),
        ({"pass_at_k": 0.1}, "pass@4 0.10, too few right"),
        ({"pass_at_k": 0.95}, "little to learn"),
        ({"well_formed_samples": 0.3}, "30% well-formed"),
        ({"constant_answer_share": 0.99}, "one answer, (A), scores 0.99: shuffle the options"),
        # 0.3 right of 0.8 well-formed: 0.375 (0.37 in float) of the letters given are right.
        (
            {"chance": 1 / 3, "well_formed_samples": 0.8},
            "samples at chance (0.37 of the well-formed right, chance 0.33)",
        ),
        ({"chance": 1 / 3, "sample_accuracy": 0.5}, "learnable from its own samples"),
        # Guessing among three letters gives pass@4 near 0.8-0.95: still guesses.
        ({"chance": 1 / 3, "pass_at_k": 0.95, "well_formed_samples": 0.9}, "samples at chance"),
        # Right samples found, but most of them one answer.
        (
            {"top_right_answer": "1", "top_right_answer_share": 0.7},
            "70% of its right samples are one answer, 1 (pass@4 0.50): learning from them "
            "teaches that answer",
        ),
        (
            {"top_right_answer": "1", "top_right_answer_share": 0.3},
            "learnable from its own samples",
        ),
        ({"constant_answer_share": 0.6, "accuracy_correct_instruction": 0.5}, "shuffle"),
        (
            {"constant_answer_share": 0.45, "accuracy_correct_instruction": 0.4},
            "greedy at or below",
        ),
        # 72 of 80 queries answered "1" by greedy decoding: a model collapsed to one answer.
        (
            {"examples": 80, "top_greedy_answers": {"1": 72, "2": 5, "3": 3}},
            "; greedy answers 1 to 90% of the queries",
        ),
    ],
)
def test_the_reading(change, expected):
    assert expected in reading({**ROW, **change}, k=4)


def test_greedy_answers_spread_over_the_queries_add_nothing():
    row = {**ROW, "examples": 80, "top_greedy_answers": {"2": 23, "3": 21, "1": 14}}
    assert "greedy answers" not in reading(row, k=4)


def test_a_killed_screen_keeps_its_finished_rows(tiny_gpt2_dir, tmp_path, monkeypatch):
    policy = load_policy(tiny_gpt2_dir)
    record = {"model": tiny_gpt2_dir}
    (first,) = screen(policy, [("sort", TASK)], SETTINGS, tmp_path, record)
    # A row kept from an older screen gets today's chance level and reading.
    saved = json.loads((tmp_path / "screen.json").read_text())
    del saved["rows"][0]["chance"]
    del saved["settings"]["sampling_grid"]  # a setting newer than that screen: its default
    saved["rows"][0]["reading"] = "an older rule's reading"
    (tmp_path / "screen.json").write_text(json.dumps(saved))
    screened = []
    real = screen_module.screen_task
    monkeypatch.setattr(screen_module, "screen_task",
                        lambda p, task, s: screened.append(task.name) or real(p, task, s))  # fmt: skip
    count = load_task("synthetic/count", num_examples=60, validation_fraction=0.2)
    rows = screen(policy, [("sort", TASK), ("count", count)], SETTINGS, tmp_path, record)
    assert screened == ["synthetic/count"] and [r["row"] for r in rows] == ["sort", "count"]
    assert rows[0]["reading"] == first["reading"] and "chance" in rows[0]
    other = ScreenSettings(limit=5, num_samples=3, max_new_tokens=6, batch_size=8)
    with pytest.raises(HIRError, match="another --output_dir"):
        screen(policy, [("sort", TASK)], other, tmp_path, record)


def test_the_command(tiny_gpt2_dir, tmp_path, capsys):
    out = tmp_path / "screen"
    code = main(["screen", "--model", tiny_gpt2_dir, "--tasks", "synthetic/sort",
                 "--limit", "4", "--num_samples", "2", "--max_new_tokens", "4",
                 "--output_dir", str(out)])  # fmt: skip
    assert code == 0
    saved = json.loads((out / "screen.json").read_text())
    assert [r["row"] for r in saved["rows"]] == ["synthetic/sort"]
    assert saved["settings"]["num_samples"] == 2 and saved["model"] == tiny_gpt2_dir
    assert "| synthetic/sort |" in capsys.readouterr().out
    assert main(["screen", "--model", tiny_gpt2_dir]) == 2
    assert "needs --model and --tasks" in capsys.readouterr().err
    assert main(["screen", "--model", tiny_gpt2_dir, "--tasks", "bigbench/nonsense",
                 "--bigbench_dir", str(tmp_path)]) == 2  # fmt: skip
    assert "may be wrong" in capsys.readouterr().err


def test_shuffled_rows_where_one_answer_dominates(tiny_gpt2_dir, tmp_path, capsys):
    root = tmp_path / "bigbench"
    examples = [{"input": f"Question {i}?", "target_scores": {"yes": 1, "no": 0, "maybe": 0}}
                for i in range(30)]  # fmt: skip
    (root / "date_understanding").mkdir(parents=True)
    (root / "date_understanding" / "task.json").write_text(json.dumps({"examples": examples}))
    out = tmp_path / "screen"
    code = main(["screen", "--model", tiny_gpt2_dir, "--tasks", "bigbench/date_understanding",
                 "--bigbench_dir", str(root), "--shuffle_options", "0", "--limit", "4",
                 "--num_samples", "1", "--max_new_tokens", "3", "--output_dir", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    rows = json.loads((out / "screen.json").read_text())["rows"]
    assert [r["row"] for r in rows] == ["bigbench/date_understanding",
                                        "bigbench/date_understanding (options shuffled, seed 0)"]  # fmt: skip
    assert rows[0]["constant_answer_share"] == 1.0 > rows[1]["constant_answer_share"]
    assert rows[0]["chance"] == pytest.approx(1 / 3)


def test_a_trained_run_is_screened_with_its_weights(tiny_gpt2_dir, tmp_path, capsys):
    from hir.online.evaluate import evaluate
    from hir.recipes.export import checkpoint_of
    from hir.trainers.sft import SFTConfig, SFTTrainer

    run = tmp_path / "run"
    config = SFTConfig(output_dir=str(run), iterations=1, epochs_per_iteration=2, batch_size=16,
                        max_new_tokens=6, report_to="none", learning_rate=5e-3)  # fmt: skip
    SFTTrainer(tiny_gpt2_dir, TASK, config).train()
    out = tmp_path / "screen"
    code = main(["screen", "--model", tiny_gpt2_dir, "--run", str(run), "--tasks", "synthetic/sort",
                 "--limit", "8", "--num_samples", "1", "--max_new_tokens", "6",
                 "--output_dir", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    saved = json.loads((out / "screen.json").read_text())
    assert saved["run"] == str(checkpoint_of(run))
    trained = load_policy(tiny_gpt2_dir)
    trained.load_weights(checkpoint_of(run))
    task = load_task("synthetic/sort", validation_fraction=0.2)
    expected = evaluate(trained, task, split="validation", max_new_tokens=6, limit=8)
    untrained = evaluate(
        load_policy(tiny_gpt2_dir), task, split="validation", max_new_tokens=6, limit=8
    )
    # The training moved the answers, so the screen can only match them with the run's weights.
    assert [r["answer"] for r in untrained.records] != [r["answer"] for r in expected.records]
    assert saved["rows"][0]["accuracy_correct_instruction"] == expected.accuracy
    assert saved["rows"][0]["top_greedy_answers"] == dict(
        Counter(r["answer"] for r in expected.records).most_common(3)
    )
