"""Instructions per example (Example.instruction) and hindsight constraint relabeling on the
loop: every example is sampled and evaluated under its own instruction, HIR relabels each sample
with constraints it satisfies (its pairwise opposite the instruction it was drawn under), binary
relabeling keeps a right sample's own instruction, and a task without constraints is refused."""

import pytest

pytest.importorskip(
    "lm_eval", reason="constraints are lm-eval's checkers (pip install -e '.[dev]')"
)

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
