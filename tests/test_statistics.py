"""The paired statistics of `hir compare` against a hand computation and scipy's paired t-test."""

import math

import pytest
from scipy import stats

from hir.compare.statistics import TIE, paired_difference, paired_rows


def test_a_paired_difference_by_hand():
    # Differences 0.1, 0.2, 0.3: mean 0.2, sd 0.1; t(0.975, 2) = 4.303 (any t table).
    row = paired_difference([0.5, 0.6, 0.7], [0.4, 0.4, 0.4])
    half = 4.302652729911275 * 0.1 / math.sqrt(3)
    assert (row["mean"], row["sd"]) == pytest.approx((0.2, 0.1))
    assert (row["low"], row["high"]) == pytest.approx((0.2 - half, 0.2 + half))
    assert row["verdict"] == TIE  # the interval [-0.048, 0.448] holds zero
    assert paired_difference([0.7, 0.75, 0.8], [0.4, 0.4, 0.4])["verdict"] == "better"
    assert paired_difference([0.4, 0.4, 0.4], [0.7, 0.75, 0.8])["verdict"] == "worse"
    # Equal on every seed: no spread, no gap.
    assert paired_difference([0.275] * 3, [0.275] * 3)["verdict"] == TIE
    assert paired_difference([0.3], [0.2])["verdict"] == "one seed: no interval"


def test_the_interval_is_scipys_paired_t_test():
    first, second = [0.15, 0.08, 0.125], [0.19, 0.08, 0.185]  # object_counting's hir-balanced, farl
    row = paired_difference(first, second)
    interval = stats.ttest_rel(first, second).confidence_interval(0.95)
    assert (row["low"], row["high"]) == pytest.approx((interval.low, interval.high), rel=1e-12)


def test_pairs_are_taken_over_the_seeds_both_methods_ran():
    runs = [{"method": m, "seed": s, "final_accuracy": a}
            for m, s, a in [("hir", 0, 0.1), ("hir", 1, 0.2), ("farl", 0, 0.3), ("farl", 1, 0.5),
                            ("farl", 2, 0.9), ("sft", 2, 0.4)]]  # fmt: skip
    rows = paired_rows(runs, ["hir", "farl", "sft"])
    assert [(r["first"], r["second"], r["seeds"]) for r in rows] == [
        ("hir", "farl", 2),
        ("farl", "sft", 1),
    ]
    assert rows[0]["mean"] == pytest.approx(-0.25)


def test_runs_are_paired_on_an_evaluation_made_after_the_comparison(tmp_path):
    """IFEval scored after a comparison (RUN/ifeval/summary.json): the runs paired by seed on
    one of its metrics, the first method named first; a missing metric is one line."""
    import json

    from hir.compare.statistics import main, write_paired_evaluation
    from hir.errors import HIRError

    table = [{"method": m} for m in ("start", "hir", "farl")]
    (tmp_path / "comparison.json").write_text(json.dumps({"table": table, "runs": []}))
    values = {"start": [20.0, 20.0, 20.0], "hir": [30.0, 32.0, 31.0], "farl": [25.0, 26.0, 24.0]}
    for method, per_seed in values.items():
        for seed, value in enumerate(per_seed):
            folder = tmp_path / method / f"seed-{seed}" / "ifeval"
            folder.mkdir(parents=True)
            (folder / "summary.json").write_text(
                json.dumps({"strict_mean": value, "accuracy": 0.1})
            )
    path = write_paired_evaluation(tmp_path, "ifeval", "strict_mean")
    text = path.read_text()
    by_hand = paired_difference(values["hir"], values["farl"])  # +6, +6, +7
    assert f"| hir | farl | {by_hand['mean']:+.3f} | [{by_hand['low']:+.3f}, {by_hand['high']:+.3f}] | 3 | better |" in text  # fmt: skip
    assert path.name == "paired-ifeval-strict_mean.md" and text.startswith("ifeval strict_mean")
    with pytest.raises(HIRError, match="has no 'pass_rate'"):
        write_paired_evaluation(tmp_path, "ifeval", "pass_rate")
    main([str(tmp_path), "--evaluation", "ifeval", "--metric", "accuracy"])
    assert (tmp_path / "paired-ifeval-accuracy.md").is_file()
