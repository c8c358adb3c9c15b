import pytest

from hir import HIRError
from hir.online.relabel import BinaryRelabel, CallableRelabel, QuantileRelabel
from hir.tasks import load_task
from hir.trainers.hir import HIRConfig, make_relabeler


def test_binary_relabel_keeps_every_sample():
    phi = BinaryRelabel("Be right.", "Be wrong.")
    assert phi("Be right.", "q", "o", 1.0) == "Be right."
    assert phi("Be right.", "q", "o", 0.0) == "Be wrong."
    assert phi("Be right.", "q", "o", 0.99) == "Be wrong."  # threshold 1.0
    assert (
        BinaryRelabel("Be right.", "Be wrong.", threshold=0.5)("Be right.", "q", "o", 0.6)
        == "Be right."
    )
    assert phi.opposite("Be right.") == "Be wrong." and phi.opposite("Be wrong.") == "Be right."
    assert phi.target_instruction == "Be right."


def test_quantile_relabel_buckets_by_rank_among_the_buffer():
    phi = QuantileRelabel(num_buckets=4)
    phi.fit([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    # 0 of 8 above 0.8 -> top 25%; 2 above 0.6 -> 25%; 4 above 0.4 -> 50% bucket; 7 above 0.1 -> bottom
    assert [phi.bucket(s) for s in (0.8, 0.6, 0.4, 0.1)] == [0, 1, 2, 3]
    assert (
        phi(phi.target_instruction, "q", "o", 0.8) == "Give an answer that scores in the top 25%."
    )
    assert (
        phi("x", "q", "o", 0.6) == "Give an answer that scores in the top 50% but not the top 25%."
    )
    assert phi.opposite(phi.instructions[0]) == phi.instructions[3]
    assert phi.opposite(phi.instructions[3]) == phi.instructions[0]


def test_quantile_ties_share_a_bucket_and_fit_is_required():
    phi = QuantileRelabel(2)
    with pytest.raises(HIRError, match="needs fit"):
        phi.bucket(0.5)
    phi.fit([1.0, 1.0, 1.0, 0.0])
    assert phi.bucket(1.0) == 0 and phi.bucket(0.0) == 1
    with pytest.raises(HIRError, match="at least 2"):
        QuantileRelabel(1)


def test_user_relabel_function_and_its_opposites():
    phi = CallableRelabel(lambda p, q, o, s: "Long." if len(o) > 3 else "Short.", "Long.", "Short.")
    assert phi("Long.", "q", "abcd", 0.0) == "Long."
    assert phi.opposite("Long.") == "Short." and phi.opposite("Short.") == "Long."
    bad = CallableRelabel(lambda p, q, o, s: 3, "Long.", "Short.")
    with pytest.raises(HIRError, match="must return an instruction string"):
        bad("Long.", "q", "o", 1.0)


def test_make_relabeler_from_config(tmp_path):
    task = load_task("synthetic/count", num_examples=10)
    assert isinstance(make_relabeler(HIRConfig(), task), BinaryRelabel)
    assert isinstance(make_relabeler(HIRConfig(relabel="quantile"), task), QuantileRelabel)
    module = tmp_path / "phi.py"
    module.write_text("def phi(instruction, query, output, score):\n    return 'Be bold.'\n")
    user = make_relabeler(HIRConfig(relabel=f"{module}:phi"), task)
    assert user("x", "q", "o", 0.0) == "Be bold."
    assert user.target_instruction == task.correct_instruction


def test_quantile_ties_take_their_mid_rank_not_the_target_bucket():
    """Graded feedback early on: 9 of 10 samples score 0. At their best rank every 0 would be
    "in the top 25%" (the target instruction) and the instruction would carry no information."""
    phi = QuantileRelabel(num_buckets=4)
    phi.fit([0.0] * 9 + [0.7])
    assert phi.bucket(0.7) == 0
    assert phi.bucket(0.0) == 2  # mid-rank (1 + 9/2) / 10 = 0.55 -> the third bucket
    phi.fit([0.0] * 20)
    assert phi.bucket(0.0) == 2  # a buffer of ties is in the middle, not at the target


def test_a_graded_instruction_keeps_the_tasks_instruction():
    """A bucket's words alone name no task (a chat model asked only "Give an answer that scores
    in the top 25%." answers that sentence): by default they follow the task's instruction."""
    task = load_task("synthetic/sort", num_examples=12)
    kept = make_relabeler(HIRConfig(relabel="quantile"), task)
    assert kept.target_instruction == f"{task.correct_instruction} Give an answer that scores in the top 25%."  # fmt: skip
    assert all(i.startswith(task.correct_instruction + " ") for i in kept.instructions)
    alone = make_relabeler(HIRConfig(relabel="quantile", graded_keeps_instruction=False), task)
    assert alone.target_instruction == "Give an answer that scores in the top 25%."
    own = load_task("constraints", num_examples=12) if _has_lm_eval() else None
    if own is not None:
        with pytest.raises(HIRError, match="use --relabel constraints or binary"):
            make_relabeler(HIRConfig(relabel="quantile"), own)


def _has_lm_eval() -> bool:
    import importlib.util

    return importlib.util.find_spec("lm_eval") is not None
