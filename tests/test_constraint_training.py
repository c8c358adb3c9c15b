"""Instructions per example (Example.instruction) and hindsight constraint relabeling on the
loop: every example is sampled and evaluated under its own instruction, HIR relabels each sample
with constraints it satisfies (its pairwise opposite the instruction it was drawn under), binary
relabeling keeps a right sample's own instruction, and a task without constraints is refused."""

import pytest

pytest.importorskip(
    "lm_eval", reason="constraints are lm-eval's checkers (pip install -e '.[dev]')"
)

from helpers import SHARED_IFEVAL  # noqa: E402

from hir.errors import HIRError  # noqa: E402
from hir.tasks import load_task  # noqa: E402
from hir.tasks.constraints import WRONG_TEMPLATE, constraints_of, satisfies  # noqa: E402
from hir.trainers.farl import FARLConfig, FARLTrainer  # noqa: E402
from hir.trainers.hir import HIRConfig, HIRTrainer  # noqa: E402

TASK = load_task("constraints", num_examples=40)
QUICK = dict(iterations=1, batch_size=16, max_new_tokens=8, num_samples=2, report_to="none",
             seed=0, eval_limit=4, epochs_per_iteration=1, max_queries_per_iteration=6)  # fmt: skip


def test_each_example_is_sampled_and_evaluated_under_its_own_instruction(tiny_gpt2_dir, tmp_path):
    trainer = FARLTrainer(tiny_gpt2_dir, TASK, FARLConfig(output_dir=str(tmp_path), **QUICK))
    trainer.sample(1)
    samples = trainer.buffer.samples
    assert samples and all(s.instruction == trainer.examples_by_id[s.query_id].instruction for s in samples)  # fmt: skip
    assert len({s.instruction for s in samples}) > 1  # instructions differ between examples
    from hir.online.evaluate import evaluate

    result = evaluate(trainer.policy, TASK, split="test", limit=3, max_new_tokens=4)
    for record, example in zip(result.records, TASK.split("test")):
        assert record["prompt"] == TASK.prompt(example.query, example.instruction)
    assert set(result.task_metrics) >= {"prompt_level_strict", "inst_level_loose"}


def test_hir_relabels_each_sample_with_constraints_it_satisfies(tiny_gpt2_dir, tmp_path):
    config = HIRConfig(
        output_dir=str(tmp_path), relabel="constraints", sub_output_prob=0.0, **QUICK
    )
    trainer = HIRTrainer(tiny_gpt2_dir, TASK, config)
    trainer.sample(1)
    samples = trainer.buffer.samples
    items = trainer.training_items(1)
    assert len(items) == len(samples)
    changed = 0
    for sample, item in zip(samples, items):
        example = item.example
        own = constraints_of(example)
        if all(satisfies(sample.output, c, example.query) for c in own):
            assert item.instruction == sample.instruction  # met them all: kept
            assert item.opposite == WRONG_TEMPLATE.replace("{instruction}", sample.instruction)
        else:
            changed += 1
            assert item.instruction != sample.instruction
            assert item.opposite == sample.instruction  # told apart from what it was asked
    assert changed > 0
    # Relabeling is reproducible: the same samples get the same instructions.
    assert [i.instruction for i in trainer.training_items(1)] == [i.instruction for i in items]
    trainer.update(items, 1)  # trains on them (pairwise contrast against the opposites)


def test_binary_relabeling_keeps_a_right_samples_own_instruction(tiny_gpt2_dir, tmp_path):
    trainer = HIRTrainer(tiny_gpt2_dir, TASK, HIRConfig(output_dir=str(tmp_path), sub_output_prob=0.0, **QUICK))  # fmt: skip
    trainer.sample(1)
    for sample, item in zip(trainer.buffer.samples, trainer.training_items(1)):
        wrong = WRONG_TEMPLATE.replace("{instruction}", sample.instruction)
        assert item.instruction == (sample.instruction if sample.score >= 1.0 else wrong)


def test_constraint_relabeling_is_refused_where_it_cannot_apply(tiny_gpt2_dir, tmp_path):
    with pytest.raises(HIRError, match="needs --sub_output_prob 0"):
        HIRConfig(relabel="constraints")
    sort = load_task("synthetic/sort", num_examples=20)
    config = HIRConfig(
        output_dir=str(tmp_path), relabel="constraints", sub_output_prob=0.0, **QUICK
    )
    with pytest.raises(HIRError, match="use --task constraints"):
        HIRTrainer(tiny_gpt2_dir, sort, config)


@pytest.mark.skipif(not SHARED_IFEVAL.is_dir(), reason="needs ../shared/ifeval")
def test_compare_scores_every_run_on_a_final_task_with_paired_verdicts(tiny_gpt2_dir, tmp_path, monkeypatch):  # fmt: skip
    """Trained on constraint requests, reported on IFEval: each run's final model and the start
    scored on IFEval's test split, paired by seed (the start once: its second seed, the same
    weights, takes a copy); a resumed comparison reads them back."""
    import json

    import hir.compare.final_evaluation as final_evaluation
    from hir.cli import main

    made = []
    evaluate = final_evaluation.evaluate
    monkeypatch.setattr(final_evaluation, "evaluate", lambda *a, **k: made.append(1) or evaluate(*a, **k))  # fmt: skip
    from hir.tasks.ifeval import aggregate, load_prompts, score_response

    out = tmp_path / "compare"
    prompts = tmp_path / "ifeval-first-20.jsonl"  # (a share of the 541, for speed)
    prompts.write_text(
        "".join((SHARED_IFEVAL / "input_data.jsonl").read_text().splitlines(True)[:20])
    )
    argv = ["compare", "--model", tiny_gpt2_dir, "--task", "constraints", "--num_examples", "40",
            "--methods", "start,hir-constraints,farl", "--seeds", "0,1", "--iterations", "1",
            "--num_samples", "2", "--max_new_tokens", "6", "--batch_size", "16", "--eval_limit", "4",
            "--epochs_per_iteration", "1", "--max_queries_per_iteration", "4", "--report_to", "none",
            "--final_eval", f"ifeval:{prompts}", "--final_eval_metric", "strict_mean",
            "--final_eval_max_new_tokens", "4", "--output_dir", str(out)]  # fmt: skip
    assert main(argv) == 0
    for method in ("start", "hir-constraints", "farl"):
        folder = out / method / "seed-1" / "final-eval"
        summary = json.loads((folder / "summary.json").read_text())
        predictions = [
            json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()
        ]
        assert len(predictions) == 20
        by_hand = aggregate(
            [score_response(p, r["prediction"]) for p, r in zip(load_prompts(prompts), predictions)]
        )
        assert summary["strict_mean"] == pytest.approx(by_hand["strict_mean"])
    assert len(made) == 5  # 2 seeds x 2 trained methods, and the start once
    starts = [out / "start" / f"seed-{seed}" / "final-eval" for seed in (0, 1)]
    assert [(f / "predictions.jsonl").read_text() for f in starts].count(
        (starts[0] / "predictions.jsonl").read_text()
    ) == 2
    trained = json.loads(
        (out / "hir-constraints" / "seed-0" / "final-eval" / "summary.json").read_text()
    )
    start = json.loads((starts[1] / "summary.json").read_text())
    assert trained["config"]["weights_sha256"] != start["config"]["weights_sha256"]
    paired = (out / "paired-final-eval-strict_mean.md").read_text()
    assert "| hir-constraints | farl |" in paired and "| start | farl |" in paired
    before = (out / "farl" / "seed-0" / "final-eval" / "summary.json").stat().st_mtime_ns
    assert main([*argv, "--resume"]) == 0
    assert (out / "farl" / "seed-0" / "final-eval" / "summary.json").stat().st_mtime_ns == before
