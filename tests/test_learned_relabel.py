"""The learned relabeler: under a feedback budget only a share of the samples is scored, and a
classifier trained on them relabels the rest. Its agreement with the scripted relabeler on
held-out samples is measured; it must be high where the feedback shows in the output."""

import random
import string

import pytest

from hir import HIRError
from hir.online.learned_relabel import LearnedRelabel, output_features
from hir.online.relabel import BinaryRelabel
from hir.tasks import load_task
from hir.trainers.hir import HIRConfig, HIRTrainer


def random_outputs(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    letters = string.ascii_lowercase + " "
    return ["".join(rng.choice(letters) for _ in range(rng.randint(1, 24))) for _ in range(count)]


def long_is_correct(output: str) -> float:
    """A feedback on the output's length only."""
    return float(len(output) > 12)


def test_features_count_ngrams_and_length():
    features = output_features(["ab", "abab"])
    # "ab": 2 unigrams + 1 bigram; "abab": 4 + 3 + 2 trigrams: the counts hold the length.
    assert features[0, :-1].sum() == 3 and features[1, :-1].sum() == 9
    assert features[1, -1] > features[0, -1]


def test_a_feedback_on_the_output_length_is_learned_with_high_agreement():
    outputs = random_outputs(400, seed=0)
    scored, unscored = outputs[:200], outputs[200:]
    relabel = LearnedRelabel(BinaryRelabel("Be right.", "Be wrong."), seed=0)
    relabel.fit(outputs, [long_is_correct(o) for o in scored] + [None] * len(unscored))
    print(f"held-out agreement with the scripted relabeler: {relabel.agreement:.3f}")
    assert relabel.agreement >= 0.9
    # The unscored samples: relabeled by the classifier, as the scripted relabeler would.
    predicted = [relabel("Be right.", "q", o, None) for o in unscored]
    truth = ["Be right." if long_is_correct(o) else "Be wrong." for o in unscored]
    assert sum(p == t for p, t in zip(predicted, truth)) / len(unscored) >= 0.9
    # A scored sample keeps the scripted instruction, whatever the classifier would say.
    assert relabel("Be right.", "q", "x", 1.0) == "Be right."


def test_a_feedback_the_output_does_not_show_is_measured_as_such():
    """Labels that depend on nothing in the output (the query decides): agreement near chance."""
    outputs = random_outputs(300, seed=1)
    rng = random.Random(2)
    relabel = LearnedRelabel(BinaryRelabel("Be right.", "Be wrong."), seed=0)
    relabel.fit(outputs, [float(rng.random() < 0.5) for _ in outputs])
    assert relabel.agreement < 0.75


def test_hir_under_a_feedback_budget_scores_only_its_share(tiny_gpt2_dir, tmp_path):
    calls = []

    def length_feedback(answer, example):
        calls.append(answer)
        return float(len(answer) > 10)

    task = load_task("synthetic/sort", num_examples=40, feedback=length_feedback)
    config = HIRConfig(output_dir=str(tmp_path), feedback_budget=0.5, iterations=1, num_samples=4,
                       max_new_tokens=8, temperature=2.0, report_to="none")  # fmt: skip
    trainer = HIRTrainer(tiny_gpt2_dir, task, config)
    calls.clear()  # (the construction checks the feedback once on a label)
    metrics = trainer.sample(1)
    samples = trainer.buffer.samples
    scored = [s for s in samples if s.score is not None]
    assert len(calls) == len(scored) and 0.3 < len(scored) / len(samples) < 0.7
    assert metrics["scored_share"] == pytest.approx(len(scored) / len(samples))
    items = trainer.training_items(1)
    relabel = trainer.relabeler
    assert isinstance(relabel, LearnedRelabel) and relabel.agreement is not None
    for sample, item in zip(samples, items):
        if sample.score is not None:
            expected = relabel.scripted("", "", sample.output, sample.score)
        else:
            expected = relabel.instructions[relabel.classifier.predict([sample.output])[0]]
        assert item.instruction == expected


def test_a_feedback_budget_needs_a_scripted_relabeler():
    with pytest.raises(HIRError, match="feedback_budget must be in"):
        HIRConfig(feedback_budget=0.0)
    with pytest.raises(HIRError, match="learns a scripted relabeler"):
        HIRConfig(feedback_budget=0.5, relabel="mine.py:relabel")
