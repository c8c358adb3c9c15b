"""The one feedback contract (hir.tasks.feedback): hir's per-answer form and TRL's batch form
score alike, drive `hir train` and `hir compare`, and a comparison's start rows equal the
iteration 0 of the methods evaluated under the same instruction."""

import json

import pytest

from hir import HIRError
from hir.cli import main
from hir.tasks import Example, Task, load_task
from hir.tasks.feedback import Feedback, dataset_columns

# A TRL reward function, as a TRL user writes it: batch in, one float per completion out;
# `answer` is the data's own column name.
TRL_REWARD = '''
CALLS = []

def overlap(prompts, completions, answer, **kwargs):
    """Half for the answer's words in the completion, half for a completion of 10+ characters."""
    CALLS.append(len(completions))
    return [(len(set(c.split()) & set(a.split())) / len(a.split()) + min(len(c), 10) / 10) / 2
            for c, a in zip(completions, answer)]
'''


def write_user_task(folder):
    data = folder / "data.jsonl"
    words = ["red", "blue", "green", "cat", "dog", "sun", "tree", "fish"]
    records = [{"question": f"Repeat: {words[i % 8]} {words[(i + 3) % 8]}",
                "answer": f"{words[i % 8]} {words[(i + 3) % 8]}"} for i in range(20)]  # fmt: skip
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    (folder / "rewards.py").write_text(TRL_REWARD)
    return data, folder / "rewards.py"


def per_answer(answer, example):
    return float(answer == example.target)


def test_both_forms_score_alike_and_a_batch_function_is_called_once_per_batch():
    calls = []

    def trl_style(prompts, completions, target, **kwargs):
        calls.append((list(prompts), list(completions), kwargs["query"]))
        return [float(c == t) for c, t in zip(completions, target)]

    examples = [Example("0", "q0", "a"), Example("1", "q1", "b")]
    outputs = ["a", "x"]
    by_answer = Feedback(per_answer)(["p0", "p1"], outputs, outputs, examples)
    batched = Feedback(trl_style)(["p0", "p1"], outputs, outputs, examples)
    assert by_answer == batched == [1.0, 0.0]
    assert calls == [(["p0", "p1"], ["a", "x"], ["q0", "q1"])]
    assert not Feedback(per_answer).batch and Feedback(trl_style).batch


def test_the_columns_a_trl_function_receives_are_the_datas_own():
    examples = [Example("7", "q", "t", meta={"answer": "t", "level": 2})]
    assert dataset_columns(examples) == {"query": ["q"], "target": ["t"], "example_id": ["7"],
                                         "answer": ["t"], "level": [2]}  # fmt: skip


def test_a_batch_function_that_returns_the_wrong_count_or_range_is_one_clear_error():
    examples = [Example("0", "q", "a"), Example("1", "q", "b")]
    with pytest.raises(HIRError, match="must return a list of 2 numbers"):
        Feedback(lambda prompts, completions, **kw: [1.0])(["p", "p"], ["a", "b"], ["a", "b"], examples)  # fmt: skip
    with pytest.raises(HIRError, match=r"must lie in \[0, 1\]"):
        Feedback(lambda prompts, completions, **kw: [1.0, 3.0])(["p", "p"], ["a", "b"], ["a", "b"], examples)  # fmt: skip
    unbounded = Feedback(lambda prompts, completions, **kw: [1.0, 3.0], bounded=False)
    assert unbounded(["p", "p"], ["a", "b"], ["a", "b"], examples) == [1.0, 3.0]


def test_a_task_scores_a_batch_in_one_call_of_a_trl_function(tmp_path):
    data, rewards = write_user_task(tmp_path)
    task = load_task(f"jsonl:{data}", query_field="question", feedback=f"{rewards}:overlap")
    examples = task.split("train")[:3]
    outputs = [examples[0].target, "nothing", examples[2].target.split()[0]]
    scored = task.score_outputs([task.prompt(e.query) for e in examples], outputs, examples)
    assert [score for _, score in scored] == pytest.approx(
        [(1 + 0.9) / 2, 0.7 / 2, (0.5 + 0.3) / 2], abs=0.051
    )
    assert task.feedback.__globals__["CALLS"] == [3]
    assert isinstance(task, Task) and task.score("", examples[0]) == 0.0


def test_a_trl_reward_drives_hir_train(tiny_gpt2_dir, tmp_path):
    data, rewards = write_user_task(tmp_path)
    out = tmp_path / "run"
    code = main(["train", "--model", tiny_gpt2_dir, "--task", f"jsonl:{data}", "--query_field",
                 "question", "--feedback", f"{rewards}:overlap", "--relabel", "quantile",
                 "--iterations", "1", "--num_samples", "2", "--max_new_tokens", "4",
                 "--epochs_per_iteration", "1", "--batch_size", "8", "--report_to", "none",
                 "--output_dir", str(out)])  # fmt: skip
    assert code == 0
    task = load_task(f"jsonl:{data}", query_field="question")
    targets = {e.id: e.target for e in task.examples}
    buffer = [json.loads(line) for line in (out / "buffer.jsonl").read_text().splitlines()]
    assert buffer
    for sample in buffer:  # every buffered score is the TRL function's, recomputed by hand
        output, target = sample["output"], targets[sample["query_id"]].split()
        overlap = len(set(output.split()) & set(target)) / len(target)
        assert sample["score"] == pytest.approx((overlap + min(len(output), 10) / 10) / 2)


def test_start_rows_equal_iteration_0_under_each_instruction(tiny_llama_chat_dir, tmp_path):
    """A chat model, a user task, a TRL reward, HIR with quantile relabeling next to FARL: HIR
    evaluates under its top-bucket instruction, FARL under the correct-answer one; the start
    has a row for each, and each equals the iteration 0 of the methods evaluated under it."""
    data, rewards = write_user_task(tmp_path)
    out = tmp_path / "compare"
    code = main(["compare", "--model", tiny_llama_chat_dir, "--task", f"jsonl:{data}",
                 "--query_field", "question", "--feedback", f"{rewards}:overlap",
                 "--relabel", "quantile", "--methods", "start,hir,farl", "--seeds", "0",
                 "--lora_r", "4", "--train_last_layers", "1", "--eval_limit", "4",
                 "--max_new_tokens", "6", "--iterations", "1", "--num_samples", "2",
                 "--epochs_per_iteration", "1", "--batch_size", "8", "--output_dir", str(out)])  # fmt: skip
    assert code == 0
    record = json.loads((out / "comparison.json").read_text())
    runs = {run["method"]: run for run in record["runs"]}
    assert list(runs) == ["start", "start@hir", "hir", "farl"]
    assert (
        runs["start@hir"]["instruction"]
        == runs["hir"]["instruction"]
        != runs["farl"]["instruction"]
    )
    assert runs["start"]["instruction"] == runs["farl"]["instruction"]
    for start, method in (("start", "farl"), ("start@hir", "hir")):
        first = runs[method]["history"][0]
        assert (runs[start]["final_accuracy"], runs[start]["final_mean_score"]) == (
            first["accuracy"], first["mean_score"])  # fmt: skip
    # What was compared is in the record itself.
    assert record["model"] == tiny_llama_chat_dir and record["task"] == f"jsonl:{data}"
    assert record["methods"]["hir"]["relabel"] == "quantile"
    assert "relabel" not in record["methods"]["farl"]
    assert "evaluated under" in (out / "comparison.md").read_text()


def test_a_tasks_trl_reward_scores_conversational_rows_as_plain_ones():
    """TRL passes a chat dataset's prompts and completions as lists of messages; hir's reward
    scores the last message's text, as it scores the plain text."""
    task = load_task("synthetic/count", num_examples=20).for_format(True)
    plain, chat = task.trl_rows(), task.trl_rows(conversational=True)
    assert [r["prompt"] for r in plain] == [r["prompt"][-1]["content"] for r in chat]
    assert all(r["prompt"][-1]["role"] == "user" for r in chat)
    reward = task.trl_reward()
    ids = [r["example_id"] for r in plain[:6]]
    answers = [str(e.target) for e in task.split("train")[:3]] + ["no", "0", ""]
    as_text = reward([r["prompt"] for r in plain[:6]], answers, ids)
    as_messages = reward([r["prompt"] for r in chat[:6]],
                         [[{"role": "assistant", "content": a}] for a in answers], ids)  # fmt: skip
    assert as_text == as_messages and as_text[:3] == [1.0, 1.0, 1.0]
