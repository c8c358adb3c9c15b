"""IFEval's scoring (hir.tasks.ifeval) through lm-eval's own checkers: GPT-4's published
responses give the IFEval paper's numbers, hand-checked responses get the verdicts a reader
gives them, the sentence counter runs offline, and bad input is one line."""

import json

import pytest
from helpers import SHARED_IFEVAL

from hir.errors import HIRError
from hir.tasks.ifeval import IFEvalScore, aggregate, load_prompts, score_response

pytest.importorskip(
    "lm_eval", reason="IFEval's checkers come with lm-eval (pip install -e '.[dev]')"
)

# The IFEval paper, Table 3, GPT-4: prompt strict, instruction strict, prompt loose, instruction loose.
PAPER_GPT4 = {"prompt_level_strict": 76.89, "inst_level_strict": 83.57,
              "prompt_level_loose": 79.30, "inst_level_loose": 85.37}  # fmt: skip
# How far lm-eval 0.4.13's checkers were measured from the paper on these responses
# (../shared/ifeval/README.md: 77.22 / 83.77 / 79.44 / 85.46, at most 0.33 points off).
MEASURED_DISTANCE = 0.35


def prompt(instruction_id: str, **kwargs) -> dict:
    return {"key": 1, "prompt": "Write something.", "instruction_id_list": [instruction_id],
            "kwargs": [kwargs]}  # fmt: skip


@pytest.mark.skipif(not SHARED_IFEVAL.is_dir(), reason="needs ../shared/ifeval")
def test_gpt4s_responses_score_the_papers_numbers():
    prompts = load_prompts(SHARED_IFEVAL / "input_data.jsonl")
    lines = (
        (SHARED_IFEVAL / "input_response_data_gpt4_20231107_145030.jsonl").read_text().splitlines()
    )
    responses = [json.loads(line)["response"] for line in lines]
    assert len(prompts) == len(responses) == 541  # matched by position (one prompt's text differs)
    result = aggregate([score_response(p, r) for p, r in zip(prompts, responses)])
    for metric, published in PAPER_GPT4.items():
        assert result[metric] == pytest.approx(published, abs=MEASURED_DISTANCE), metric


@pytest.mark.parametrize(
    "instruction, kwargs, response, strict, loose",
    [
        ("change_case:english_lowercase", {}, "all lowercase here.", True, True),
        ("change_case:english_lowercase", {}, "Not all lowercase.", False, False),
        ("punctuation:no_comma", {}, "No commas at all.", True, True),
        ("punctuation:no_comma", {}, "One, comma.", False, False),
        # The sentence counter (NLTK's punkt model): two sentences, "less than 3".
        ("length_constraints:number_sentences", {"relation": "less than", "num_sentences": 3},
         "It rains. We stay in.", True, True),
        ("length_constraints:number_sentences", {"relation": "at least", "num_sentences": 3},
         "It rains. We stay in.", False, False),
        ("startend:end_checker", {"end_phrase": "Any questions?"}, "Done. Any questions?", True, True),
        # Loose also tries the response without its last line.
        ("startend:end_checker", {"end_phrase": "Any questions?"}, "Done. Any questions?\nBye", False, True),
        ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Hi.\nP.S. bye", True, True),
    ],
)  # fmt: skip
def test_hand_checked_verdicts(instruction, kwargs, response, strict, loose):
    score = score_response(prompt(instruction, **kwargs), response)
    assert (score.prompt_strict, score.prompt_loose) == (strict, loose)
    assert score.instructions_strict == (strict,) and score.instructions_loose == (loose,)


def test_aggregate_by_hand():
    scores = [IFEvalScore(True, (True, True), True, (True, True)),
              IFEvalScore(False, (True, False, False), True, (True, True, True))]  # fmt: skip
    result = aggregate(scores)
    assert result["prompt_level_strict"] == 50.0 and result["prompt_level_loose"] == 100.0
    assert (
        result["inst_level_strict"] == pytest.approx(60.0) and result["inst_level_loose"] == 100.0
    )
    assert result["strict_mean"] == pytest.approx(55.0)
    with pytest.raises(HIRError, match="no IFEval responses"):
        aggregate([])


def test_bad_ifeval_files_are_one_line(tmp_path):
    with pytest.raises(HIRError, match="no IFEval file at"):
        load_prompts(tmp_path / "missing.jsonl")
    (tmp_path / "bad.jsonl").write_text(json.dumps({"key": 1, "prompt": "x"}) + "\n")
    with pytest.raises(HIRError, match="row 1 has no instruction_id_list, kwargs"):
        load_prompts(tmp_path / "bad.jsonl")


def test_a_checker_that_draws_at_random_gives_one_verdict_and_leaves_the_callers_random():
    """lm-eval's letter-frequency check, given a non-letter ("!"), counts a random letter; hir
    scores with `random` seeded, so the verdict is the same on every call, and restores the
    caller's random state."""
    import random

    check = prompt(
        "keywords:letter_frequency", let_relation="at least", letter="!", let_frequency=2
    )
    random.seed(123)
    expected_next = random.random()
    random.seed(123)
    verdicts = {score_response(check, "Banana bread, apple pie!! Cherry tart.") for _ in range(5)}
    assert len(verdicts) == 1
    assert random.random() == expected_next


@pytest.mark.skipif(not SHARED_IFEVAL.is_dir(), reason="needs ../shared/ifeval")
def test_the_ifeval_task_asks_each_prompt_as_it_is_and_is_test_only():
    from hir.tasks import load_task

    task = load_task(f"ifeval:{SHARED_IFEVAL / 'input_data.jsonl'}")
    assert len(task.split("test")) == 541 and task.split("train") == task.split("validation") == []
    first = task.split("test")[0]
    for chat in (False, True):
        assert task.for_format(chat).prompt(first.query) == first.query
    # The feedback is the share of the prompt's instructions followed, strictly.
    lowercase_no_comma = task.examples[0]  # no comma, 3 highlighted sections, >= 300 words
    assert lowercase_no_comma.meta["instruction_id_list"][0] == "punctuation:no_comma"
    assert task.score("A short answer without a comma.", lowercase_no_comma) == pytest.approx(1 / 3)


@pytest.mark.skipif(not SHARED_IFEVAL.is_dir(), reason="needs ../shared/ifeval")
def test_hir_eval_reports_ifevals_four_numbers(tiny_gpt2_dir, tmp_path, capsys):
    from hir.cli import main

    out = tmp_path / "eval"
    assert main(["eval", "--model", tiny_gpt2_dir, "--task", f"ifeval:{SHARED_IFEVAL / 'input_data.jsonl'}",
                 "--limit", "3", "--max_new_tokens", "8", "--output_dir", str(out)]) == 0  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    predictions = [
        json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()
    ]
    prompts = load_prompts(SHARED_IFEVAL / "input_data.jsonl")[:3]
    by_hand = aggregate([score_response(p, r["prediction"]) for p, r in zip(prompts, predictions)])
    for name, value in by_hand.items():
        assert summary[name] == pytest.approx(value)
    assert summary["accuracy"] == pytest.approx(by_hand["prompt_level_strict"] / 100)
    assert "prompt_level_strict" in capsys.readouterr().out
