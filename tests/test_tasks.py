import json
from pathlib import Path

import numpy as np
import pytest
from helpers import SHARED_BIGBENCH, write_task

from hir import HIRError
from hir.tasks import (
    PAPER_TASK_NAMES,
    Example,
    Task,
    exact_match,
    exact_match_any,
    list_tasks,
    load_task,
    normalize_answer,
)
from hir.tasks.base import split_indices
from hir.tasks.bigbench import PAPER_TASKS
from hir.tasks.synthetic import SYNTHETIC_TASKS


def test_normalization_is_the_public_codes():
    assert normalize_answer(" (B). ") == "(b)"
    assert normalize_answer("Apple\nPear.") == "applepear"
    example = Example("x", "q", "(B)")
    assert exact_match("(b).", example) == 1.0
    assert exact_match("(C)", example) == 0.0
    counting = Example("y", "q", "9", accepted=("nine",))
    assert exact_match("Nine", counting) == 0.0
    assert exact_match_any("Nine", counting) == 1.0


def test_split_is_numpy_seed_1_permutation_80_20():
    np.random.seed(1)
    expected = np.random.permutation(750).tolist()
    split = split_indices(750)
    assert split["train"] == expected[:600]
    assert split["test"] == expected[600:]
    assert split["validation"] == []


def test_validation_is_carved_from_train_and_leaves_test_alone():
    plain, carved = split_indices(100), split_indices(100, validation_fraction=0.25)
    assert carved["test"] == plain["test"]
    assert carved["train"] + carved["validation"] == plain["train"]
    assert len(carved["validation"]) == 20


def test_first_tracking_prompt_matches_the_protocol_character_for_character(bigbench_dir):
    task = load_task("bigbench/tracking_shuffled_objects_three_objects", bigbench_dir=bigbench_dir)
    first = task.examples[0]
    assert task.prompt(first.query) == (
        "Solve the question with correct answer.\n\nQ: Alice, Bob, and Claire are playing a game. "
        "At the start of the game, they are each holding a ball: Alice has a orange ball, Bob has "
        "a white ball, and Claire has a blue ball. As the game progresses, pairs of players trade "
        "balls. First, Alice and Bob swap balls. Then, Bob and Claire swap balls. Finally, Alice "
        "and Bob swap balls. At the end of the game, Alice has the \nOptions:\n(A) orange ball.\n"
        "(B) white ball.\n(C) blue ball.\nA:"
    )
    assert [e.target for e in task.examples] == ["(C)", "(A)", "(B)"]
    assert first.accepted == ("blue ball.",)


def test_generative_targets_take_element_1_and_prefixes_follow_the_public_code(bigbench_dir):
    counting = load_task("bigbench/object_counting", bigbench_dir=bigbench_dir)
    assert [e.target for e in counting.examples] == ["3", "1"]
    assert counting.examples[0].accepted == ("three",)
    # Generative inputs keep one newline where the file has two; the "prefix" key is ignored.
    assert counting.examples[1].query == "I have a flute.\nHow many instruments do I have?"
    sorting = load_task("bigbench/word_sorting", bigbench_dir=bigbench_dir)
    assert sorting.examples[0].query == "Sort the following words alphabetically:\nList: pear apple"


def test_bigbench_dir_from_environment(bigbench_dir, monkeypatch):
    monkeypatch.setenv("HIR_BIGBENCH_DIR", str(bigbench_dir))
    assert len(load_task("bigbench/object_counting").examples) == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        (json.dumps({"examples": []}), "has no examples"),
        (json.dumps({"examples": [{"input": "q"}]}), "lacks a target"),
        (
            json.dumps({"examples": [{"input": "q", "target_scores": {"a": 0}}]}),
            "no option with score 1",
        ),
    ],
)
def test_malformed_bigbench_files_name_the_file_and_the_fault(tmp_path, content, message):
    path = tmp_path / "object_counting" / "task.json"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(HIRError, match=message) as info:
        load_task("bigbench/object_counting", bigbench_dir=tmp_path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_names_and_missing_folders_are_clear_errors(tmp_path, bigbench_dir):
    with pytest.raises(HIRError, match="unknown task 'nonsense'"):
        load_task("nonsense")
    with pytest.raises(HIRError, match="does not exist"):
        load_task("bigbench/object_counting", bigbench_dir=tmp_path / "missing")
    with pytest.raises(HIRError, match="may be wrong"):
        load_task("bigbench/no_such_task", bigbench_dir=bigbench_dir)


def test_shuffled_options_keep_the_right_answer_and_are_seeded(bigbench_dir):
    protocol = load_task(
        "bigbench/tracking_shuffled_objects_three_objects", bigbench_dir=bigbench_dir
    )
    shuffled = [load_task("bigbench/tracking_shuffled_objects_three_objects",
                          bigbench_dir=bigbench_dir, shuffle_options=seed) for seed in (0, 0, 1, 2)]  # fmt: skip
    assert [e.query for e in shuffled[0].examples] == [e.query for e in shuffled[1].examples]
    orders = set()
    for task in shuffled:
        for before, after in zip(protocol.examples, task.examples):
            # The right option's text is the target's in both; the option set is unchanged.
            assert after.accepted == before.accepted
            assert sorted(after.meta["options"]) == sorted(before.meta["options"])
            letter = after.target[1]
            assert after.meta["options"][ord(letter) - 65] == after.accepted[0]
            assert f"{after.target} {after.accepted[0]}" in after.query
        orders.add(tuple(e.meta["options"] for e in task.examples))
    assert len(orders) > 1  # other seeds, other orders
    # The protocol's order when not asked for: option (A) is the file's first.
    assert protocol.examples[0].meta["options"][0] == "orange ball."
    with pytest.raises(HIRError, match="shuffle_options applies to BIG-bench"):
        load_task("synthetic/sort", shuffle_options=0)


def test_paper_12_names_all_twelve():
    names = list(PAPER_TASK_NAMES)
    assert len(names) == 12 == len(set(names))
    assert set(names) <= set(list_tasks())


PAPER_COUNTS = {
    "logical_deduction_three_objects": 300, "logical_deduction_five_objects": 500,
    "logical_deduction_seven_objects": 700, "tracking_shuffled_objects_three_objects": 750,
    "tracking_shuffled_objects_five_objects": 1250, "tracking_shuffled_objects_seven_objects": 1750,
    "date_understanding": 369, "object_counting": 1000, "penguins_in_a_table": 149,
    "geometric_shapes": 360, "reasoning_about_colored_objects": 2000, "word_sorting": 1900,
}  # fmt: skip


@pytest.mark.skipif(
    not SHARED_BIGBENCH.is_dir(), reason="../shared/bigbench is not beside the checkout"
)
@pytest.mark.parametrize("name", list(PAPER_TASKS))
def test_paper_tasks_have_the_papers_counts_and_80_20_splits(name):
    task = load_task(f"bigbench/{name}", bigbench_dir=SHARED_BIGBENCH, download=False)
    n = PAPER_COUNTS[name]
    assert len(task.examples) == n
    assert len(task.split("train")) == int(0.8 * n)
    assert len(task.split("test")) == n - int(0.8 * n)
    for example in task.examples:
        assert task.score(example.target, example) == 1.0


@pytest.mark.parametrize("kind", list(SYNTHETIC_TASKS))
def test_synthetic_tasks_are_seeded_distinct_and_verified(kind):
    task = load_task(f"synthetic/{kind}", num_examples=300, data_seed=3)
    again = load_task(f"synthetic/{kind}", num_examples=300, data_seed=3)
    other = load_task(f"synthetic/{kind}", num_examples=300, data_seed=4)
    assert [e.query for e in task.examples] == [e.query for e in again.examples]
    assert [e.query for e in task.examples] != [e.query for e in other.examples]
    assert len({e.query for e in task.examples}) == 300
    for example in task.examples:
        assert task.score(example.target, example) == 1.0
        assert task.score(example.target + " 7", example) == 0.0


def test_swap_verifier_recomputes_the_answer():
    task = load_task("synthetic/swap", num_examples=50)
    example = task.examples[0]
    wrong = next(f"({c})" for c in "ABC" if f"({c})" != example.target)
    assert task.score(wrong, example) == 0.0


def test_jsonl_data_with_custom_columns_and_list_answers(tmp_path):
    path = tmp_path / "data.jsonl"
    rows = [{"question": f"q{i}", "label": ["9", "nine"], "difficulty": i} for i in range(10)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    task = load_task(f"jsonl:{path}", query_field="question", answer_field="label")
    assert len(task.examples) == 10
    example = task.examples[3]
    assert (example.query, example.target, example.accepted) == ("q3", "9", ("nine",))
    assert example.meta["difficulty"] == 3
    assert task.score("Nine", example) == 1.0


def test_jsonl_errors_say_what_to_fix(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"query": "q", "answer": "a"}\n{oops\n')
    with pytest.raises(HIRError, match="line 2 is not valid JSON"):
        load_task(str(path))
    path.write_text('{"prompt": "q", "answer": "a"}\n')
    with pytest.raises(HIRError, match="no 'query' field .*--query-field"):
        load_task(str(path))
    path.write_text("\n")
    with pytest.raises(HIRError, match="has no examples"):
        load_task(str(path))
    with pytest.raises(HIRError, match="does not exist"):
        load_task(str(tmp_path / "missing.jsonl"))


def test_hugging_face_dataset_from_disk(tmp_path):
    import datasets

    datasets.Dataset.from_dict({"query": ["a", "b", "c"], "answer": ["1", "2", "3"]}).save_to_disk(
        tmp_path / "ds"
    )
    task = load_task(f"hf:{tmp_path / 'ds'}")
    assert [e.target for e in task.examples] == ["1", "2", "3"]
    with pytest.raises(HIRError, match="cannot load Hugging Face dataset"):
        load_task(f"hf:{tmp_path / 'nothing-here'}")


def test_user_feedback_from_a_file_path(tmp_path):
    checks = tmp_path / "checks.py"
    checks.write_text(
        "def long_enough(output, example):\n    return min(len(output) / 10, 1.0)\n"
        "def broken(output, example):\n    raise KeyError('score')\n"
        "def wordy(output, example):\n    return 'yes'\n"
        "def too_big(output, example):\n    return 3\n"
        "def boolean(output, example):\n    return output == example.target\n"
    )
    task = load_task("synthetic/count", feedback=f"{checks}:long_enough", num_examples=20)
    example = task.examples[0]
    assert task.score("12345", example) == 0.5
    for name, message in [
        ("broken", "raised KeyError"),
        ("wordy", "returned str 'yes'"),
        ("too_big", "must lie in \\[0, 1\\]"),
    ]:
        bad = load_task("synthetic/count", feedback=f"{checks}:{name}", num_examples=20)
        with pytest.raises(HIRError, match=message):
            bad.score("x", example)
    boolean = load_task("synthetic/count", feedback=f"{checks}:boolean", num_examples=20)
    assert boolean.score(example.target, example) == 1.0


def test_feedback_spec_errors(tmp_path):
    with pytest.raises(HIRError, match="not of the form module:function"):
        load_task("synthetic/count", feedback="no_colon")
    with pytest.raises(HIRError, match="cannot import feedback module"):
        load_task("synthetic/count", feedback="surely_not_a_module_xyz:f")
    with pytest.raises(HIRError, match="has no function 'nope'"):
        load_task("synthetic/count", feedback="json:nope")


def test_feedback_callable_in_python():
    task = Task(
        "mine", [Example("0", "2+2", "4")], feedback=lambda output, example: float(output == "4")
    )
    assert task.score("4", task.examples[0]) == 1.0
    with pytest.raises(HIRError, match="has no examples"):
        Task("empty", [])


def test_fetch_from_a_source_archive_checks_sha256(tmp_path, monkeypatch):
    import hashlib
    import io
    import tarfile

    archive_path = tmp_path / "bigbench-1.0.0.tar.gz"
    with tarfile.open(archive_path, "w:gz") as archive:
        for name, body in [
            ("bigbench-1.0.0/bigbench/benchmark_tasks/object_counting/task.json",
             json.dumps({"examples": [{"input": "q", "target": ["one", "1"]}]})),
            ("bigbench-1.0.0/bigbench/benchmark_tasks/other_task/task.json", "{}"),
            ("bigbench-1.0.0/setup.py", "print('never run')"),
        ]:  # fmt: skip
            data = body.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    digest = hashlib.sha256(archive_path.read_bytes()).hexdigest()
    monkeypatch.setenv("HIR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HIR_BIGBENCH_URL", archive_path.as_uri())
    monkeypatch.delenv("HIR_BIGBENCH_DIR", raising=False)

    monkeypatch.setenv("HIR_BIGBENCH_SHA256", "0" * 64)
    with pytest.raises(HIRError, match="expected 0000"):
        load_task("bigbench/object_counting")
    assert not list((tmp_path / "cache").rglob("task.json"))

    monkeypatch.setenv("HIR_BIGBENCH_SHA256", digest)
    task = load_task("bigbench/object_counting")
    assert task.examples[0].target == "1"
    cached = sorted(
        p.relative_to(tmp_path / "cache") for p in (tmp_path / "cache").rglob("task.json")
    )
    assert cached == [Path("bigbench-1.0.0/object_counting/task.json")]
    # Loaded again from the cache: the archive is not read a second time.
    archive_path.unlink()
    assert load_task("bigbench/object_counting").examples[0].target == "1"


def test_write_task_helper_roundtrip(tmp_path):
    write_task(
        tmp_path,
        "geometric_shapes",
        {"examples": [{"input": "x", "target": "y", "target_scores": {"a": 1}}]},
    )
    task = load_task("bigbench/geometric_shapes", bigbench_dir=tmp_path)
    # target_scores wins over target, as in the public code.
    assert task.examples[0].target == "(A)"
