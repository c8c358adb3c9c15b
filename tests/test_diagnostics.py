"""The comparison's diagnostics table: first and last training iteration, averaged over seeds."""

import pytest

from hir.compare.diagnostics import (
    commonest_answers,
    diagnostics_markdown,
    diagnostics_rows,
    first_and_last,
)


def hir_history(entropies, target_shares):
    start = [{"iteration": 0, "accuracy": 0.3}]
    return start + [
        {"iteration": i + 1, "entropy": e, "relabeled_target_share": t, "loss_contrastive": 0.69}
        for i, (e, t) in enumerate(zip(entropies, target_shares))
    ]


def test_first_and_last_are_means_over_seeds_of_the_first_and_last_training_iteration():
    histories = [hir_history([2.0, 3.0, 5.0], [0.2, 0.3, 0.4]),
                 hir_history([1.0, 1.5, 2.0], [0.4, 0.5, 0.6])]  # fmt: skip
    assert first_and_last(histories, "entropy") == pytest.approx((1.5, 3.5))
    # The wrong-answer share is derived: 1 - the share relabeled with the target instruction.
    assert first_and_last(histories, "relabeled_other_share") == pytest.approx((0.7, 0.5))


def test_a_metric_no_run_logs_is_a_dash_and_a_run_without_it_does_not_count():
    farl = [[{"iteration": 0}, {"iteration": 1, "sample_accuracy": 0.25}]]
    sft_without_samples = [[{"iteration": 0}, {"iteration": 1, "loss": 1.0}]]
    rows = diagnostics_rows({"farl": farl, "sft": sft_without_samples})
    assert rows[0]["sample_accuracy"] == (0.25, 0.25)
    assert rows[0]["entropy"] is None and rows[1]["sample_accuracy"] is None
    table = diagnostics_markdown(rows).splitlines()
    assert table[0].startswith("| method | runs | samples correct")
    assert table[2].startswith("| farl | 1 | 0.250 → 0.250 | - |")
    assert table[3] == "| sft | 1 | " + " | ".join(["-"] * 8) + " |"


def evaluated(iteration, answer, share):
    return {"iteration": iteration, "accuracy": 0.2, "commonest_answer": answer,
            "commonest_answer_share": share}  # fmt: skip


def test_the_commonest_answer_column_is_the_first_and_last_evaluation_averaged_over_runs():
    collapsed = [evaluated(0, "2", 0.3), {"iteration": 1, "loss": 1.0}, evaluated(2, "1", 1.0)]
    nearly = [evaluated(0, "3", 0.2), evaluated(2, "1", 0.8)]
    other = [evaluated(0, "2", 0.4), evaluated(2, "3", 0.6)]
    logged_before = [{"iteration": 0, "accuracy": 0.1}, {"iteration": 2, "accuracy": 0.3}]
    summary = commonest_answers([collapsed, nearly, other, logged_before])
    # Means over the three runs that log it: (0.3+0.2+0.4)/3 and (1.0+0.8+0.6)/3; "1" ends
    # two runs, "3" one.
    assert (summary["first"], summary["last"]) == pytest.approx((0.3, 0.8))
    assert summary["answers"] == ["1", "3"] and summary["runs"] == 3
    row = diagnostics_rows({"hir": [collapsed, nearly, other, logged_before]})[0]
    line = diagnostics_markdown([row]).splitlines()[2]
    assert line.endswith('| 0.30 → 0.80 ("1"/"3"), 3 of 4 runs |')
    assert commonest_answers([logged_before]) is None
