"""A reward model as the feedback of every method: its folder, its scores against a hand-run
forward pass, the prompts it reads, quantile (percentile) relabeling and FARL's top share on its
scores, and a bad folder as one line."""

import json

import pytest
import torch

from hir import HIRError
from hir.models import load_policy
from hir.models.reward_model import (
    REWARD_CARD,
    REWARD_HEAD,
    RewardCard,
    RewardModel,
    SequenceClassifierReward,
    load_reward_model,
    reward_feedback,
    save_reward_model,
)
from hir.online.relabel import QuantileRelabel, in_top_share
from hir.tasks import load_task
from hir.trainers.farl import FARLConfig, FARLTrainer
from hir.trainers.hir import HIRConfig, HIRTrainer

PLAIN = RewardCard("plain", "Rank this.", "synthetic/sort")


@pytest.fixture(scope="module")
def reward_folder(tiny_gpt2_dir, tmp_path_factory):
    """A hir reward-model folder with a head that is not zero (a fresh head reads 0 nowhere)."""
    torch.manual_seed(0)
    model = RewardModel(load_policy(tiny_gpt2_dir))
    torch.nn.init.normal_(model.head.weight, std=0.5)
    folder = tmp_path_factory.mktemp("rm") / "reward_model"
    save_reward_model(model, folder, PLAIN)
    return folder


def hand_reward(body, head, policy, prompt: str, output: str) -> float:
    """One unpadded sequence: the last layer's state one position before the output's end
    token (the state that predicts it, having read the rest), through the head."""
    ids = policy.format.prompt_ids([prompt])[0] + policy.format.output_ids([output])[0]
    hidden = body(torch.tensor([ids]), output_hidden_states=True).hidden_states[-1][0]
    return float(head(hidden[len(ids) - 2]))


def test_a_saved_reward_model_scores_as_a_hand_run_forward_pass(reward_folder):
    model = load_reward_model(reward_folder)
    assert isinstance(model, RewardModel) and model.card == PLAIN
    # Outputs of different lengths in one batch: padding must not move what is read.
    prompts = ["Sort: b a", "Sort: kiwi apple pear fig"]
    outputs = ["a b", "apple"]
    scores = model.score(prompts, outputs)
    with torch.no_grad():
        expected = [hand_reward(model.body, model.head, model.policy, p, o)
                    for p, o in zip(prompts, outputs)]  # fmt: skip
    assert scores.tolist() == pytest.approx(expected, abs=1e-5)
    assert abs(expected[0] - expected[1]) > 1e-3  # the two really differ


def test_the_feedback_reads_the_reward_models_own_prompts(reward_folder):
    """The policy's prompt (another instruction, relabeled or not) is not what the reward model
    was trained on: the feedback rebuilds the prompt from the query, in its own format."""
    model = load_reward_model(reward_folder)
    task = load_task("synthetic/sort", num_examples=8)
    feedback = reward_feedback(model, task)
    examples = task.examples[:3]
    completions = ["a b c", "pear", "x"]
    scores = feedback(prompts=["Give a wrong answer. " + e.query for e in examples],
                      completions=completions, query=[e.query for e in examples])  # fmt: skip
    own = [task.for_format(False).prompt(e.query, "Rank this.") for e in examples]
    assert scores == pytest.approx(model.score(own, completions).tolist())


def test_a_sequence_classification_model_is_a_reward_model(tmp_path, tiny_gpt2_dir):
    from transformers import AutoConfig, AutoTokenizer, GPT2ForSequenceClassification

    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(tiny_gpt2_dir, num_labels=1)
    classifier = GPT2ForSequenceClassification(config)
    tokenizer = AutoTokenizer.from_pretrained(tiny_gpt2_dir)
    folder = tmp_path / "classifier"
    classifier.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    model = load_reward_model(folder)
    assert isinstance(model, SequenceClassifierReward)
    scores = model.score(["Sort: b a", "Sort: pear fig kiwi"], ["a b", "fig"])
    with torch.no_grad():
        expected = [float(classifier(**tokenizer(f"{p} {o}", return_tensors="pt")).logits[0, 0])
                    for p, o in (("Sort: b a", "a b"), ("Sort: pear fig kiwi", "fig"))]  # fmt: skip
    assert scores.tolist() == pytest.approx(expected, abs=1e-5)


def test_a_bad_reward_model_folder_is_one_clear_line(tmp_path, reward_folder, tiny_gpt2_dir):
    import shutil

    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoTokenizer, GPT2ForSequenceClassification

    with pytest.raises(HIRError, match="not a model folder"):
        load_reward_model(tmp_path)
    no_tokenizer = tmp_path / "no_tokenizer"
    shutil.copytree(reward_folder, no_tokenizer)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json"):
        (no_tokenizer / name).unlink(missing_ok=True)
    with pytest.raises(HIRError, match="holds no tokenizer"):
        load_reward_model(no_tokenizer)
    wrong_head = tmp_path / "wrong_head"
    shutil.copytree(reward_folder, wrong_head)
    save_file({"weight": torch.zeros(2, 32), "bias": torch.zeros(2)}, wrong_head / REWARD_HEAD)
    with pytest.raises(HIRError, match=r"its head has shape \(2, 32\)"):
        load_reward_model(wrong_head)
    with pytest.raises(HIRError, match="without a reward head"):
        load_reward_model(tiny_gpt2_dir)  # a language model, no reward head
    two_labels = tmp_path / "two_labels"
    config = AutoConfig.from_pretrained(tiny_gpt2_dir, num_labels=2)
    GPT2ForSequenceClassification(config).save_pretrained(two_labels)
    AutoTokenizer.from_pretrained(tiny_gpt2_dir).save_pretrained(two_labels)
    with pytest.raises(HIRError, match="has 2 outputs"):
        load_reward_model(two_labels)
    assert json.loads((reward_folder / REWARD_CARD).read_text())["instruction"] == "Rank this."


def test_percentile_relabeling_of_reward_scores_against_a_hand_computation():
    relabel = QuantileRelabel(4, wording="percentile")
    scores = [-2.0, 0.5, 3.0, 1.0, 1.0, -0.1, 7.5, 2.0]
    relabel.fit(scores)
    # By hand: sorted descending 7.5, 3.0, 2.0, 1.0, 1.0, 0.5, -0.1, -2.0; mid-rank / 8 from the
    # top: 7.5 -> 0.5/8 (bucket 0), 3.0 -> 1.5/8 (0), 2.0 -> 2.5/8 (1), the tied 1.0s -> 4/8
    # (2), 0.5 -> 5.5/8 (2), -0.1 -> 6.5/8 (3), -2.0 -> 7.5/8 (3).
    expected = {-2.0: 3, 0.5: 2, 3.0: 0, 1.0: 2, -0.1: 3, 7.5: 0, 2.0: 1}
    assert [relabel.bucket(s) for s in scores] == [expected[s] for s in scores]
    assert relabel.instructions == [
        "Give an answer that ranks about 88% in the training data.",
        "Give an answer that ranks about 62% in the training data.",
        "Give an answer that ranks about 38% in the training data.",
        "Give an answer that ranks about 12% in the training data.",
    ]
    assert relabel("x", "q", "o", 7.5) == relabel.target_instruction == relabel.instructions[0]
    # FARL's top quarter: the two best (mid-ranks 0.5/8 and 1.5/8 < 0.25).
    assert in_top_share(scores, 0.25) == [s in (7.5, 3.0) for s in scores]


def length_reward(prompts, completions, **columns):
    """A graded reward: the longer the completion, the better."""
    return [float(len(c)) for c in completions]


def test_hir_under_a_reward_relabels_by_its_percentiles(tiny_gpt2_dir, tmp_path):
    task = load_task("synthetic/sort", num_examples=12)
    config = HIRConfig(output_dir=str(tmp_path), relabel="percentile", iterations=1,
                       max_new_tokens=6, num_samples=2, temperature=2.0, report_to="none")  # fmt: skip
    trainer = HIRTrainer(tiny_gpt2_dir, task, config, reward=length_reward)
    trainer.logger = None
    trainer.sample(1)
    samples = trainer.buffer.samples
    assert [s.score for s in samples] == [float(len(s.output)) for s in samples]
    # The task's own feedback is kept beside the reward (the samples' accuracy reads it).
    assert all(s.task_score == task.for_format(False).score(s.output, trainer.examples_by_id[s.query_id])
               for s in samples)  # fmt: skip
    # The bucket's words follow the task's instruction, so the instruction still names the task.
    relabel = QuantileRelabel(4, wording="percentile", request=task.correct_instruction)
    relabel.fit([s.score for s in samples])
    items = trainer.training_items(1)
    assert [i.instruction for i in items] == [relabel.instructions[relabel.bucket(s.score)] for s in samples]  # fmt: skip
    assert trainer.target_instruction == relabel.instructions[0]


def test_a_reward_needs_graded_relabeling_and_a_share_to_keep(tiny_gpt2_dir, tmp_path):
    task = load_task("synthetic/sort", num_examples=12)
    with pytest.raises(HIRError, match="--relabel percentile"):
        HIRTrainer(tiny_gpt2_dir, task, HIRConfig(output_dir=str(tmp_path / "h"), report_to="none"),
                   reward=length_reward)  # fmt: skip
    with pytest.raises(HIRError, match="--keep_top_share"):
        FARLTrainer(tiny_gpt2_dir, task, FARLConfig(output_dir=str(tmp_path / "f"), report_to="none"),
                    reward=length_reward)  # fmt: skip


def test_farl_under_a_reward_keeps_the_best_scored_share(tiny_gpt2_dir, tmp_path):
    task = load_task("synthetic/sort", num_examples=12)
    config = FARLConfig(output_dir=str(tmp_path), keep_top_share=0.25, max_new_tokens=6,
                        num_samples=2, temperature=2.0, report_to="none")  # fmt: skip
    trainer = FARLTrainer(tiny_gpt2_dir, task, config, reward=length_reward)
    trainer.sample(1)
    samples = trainer.buffer.samples
    kept = {(i.example.id, i.output) for i in trainer.training_items(1)}
    by_hand = in_top_share([s.score for s in samples], 0.25)
    assert kept == {(s.query_id, s.output) for s, keep in zip(samples, by_hand) if keep}
    assert 0 < len(kept) < len(samples)


def test_the_pipeline_checks_its_final_method_before_training(tiny_gpt2_dir, tmp_path):
    from hir.recipes.instructgpt import run_instructgpt

    task = load_task("synthetic/sort", num_examples=12)
    with pytest.raises(HIRError, match="--relabel percentile"):
        run_instructgpt(tiny_gpt2_dir, task, HIRConfig(output_dir=str(tmp_path), report_to="none"))
    with pytest.raises(HIRError, match="--keep_top_share"):
        run_instructgpt(tiny_gpt2_dir, task, FARLConfig(output_dir=str(tmp_path), report_to="none"))
    assert not any(tmp_path.iterdir())  # refused before anything was written
