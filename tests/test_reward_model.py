import json

import pytest

from hir import HIRError
from hir.models import load_policy
from hir.online.sampling import Sample
from hir.recipes.instructgpt import InstructGPTStages, run_instructgpt
from hir.tasks import load_task
from hir.trainers.ppo import PPOConfig
from hir.trainers.reward_model_trainer import (
    load_comparisons,
    rankings_from_feedback,
    train_reward_model,
)


def test_reward_model_learns_a_ranking(tiny_gpt2_dir):
    policy = load_policy(tiny_gpt2_dir)
    groups = [(f"Q: list {i}\nA:", ["apple kiwi pear", "pear kiwi", "dog"]) for i in range(24)]
    model, metrics = train_reward_model(policy, groups, epochs=6, learning_rate=3e-3)
    assert metrics["reward_model_pair_accuracy"] == 1.0
    for prompt, ranked in groups[:5]:
        scores = model.score([prompt] * 3, ranked)
        assert scores[0] > scores[1] > scores[2]


def test_rankings_from_feedback_order_by_score_and_drop_ties():
    task = load_task("synthetic/sort", num_examples=20).for_format(chat=False)
    a, b = task.examples[0], task.examples[1]
    samples = [Sample(1, a.id, "x", "wrong", 0.0), Sample(1, a.id, "x", a.target, 1.0),
               Sample(1, b.id, "x", "no", 0.0), Sample(1, b.id, "x", "nope", 0.0)]  # fmt: skip
    groups = rankings_from_feedback(task, samples, "Go.")
    assert groups == [(task.prompt(a.query, "Go."), [a.target, "wrong"])]
    with pytest.raises(HIRError, match="prompt format"):  # prompts must be the policy's
        rankings_from_feedback(load_task("synthetic/sort", num_examples=20), samples, "Go.")


def test_comparisons_file(tmp_path):
    path = tmp_path / "prefs.jsonl"
    path.write_text(json.dumps({"prompt": "p", "chosen": "good", "rejected": "bad"}) + "\n"
                    + json.dumps({"prompt": "q", "ranked": ["a", "b", "c"]}) + "\n")  # fmt: skip
    assert load_comparisons(path) == [("p", ["good", "bad"]), ("q", ["a", "b", "c"])]
    path.write_text(json.dumps({"prompt": "p", "chosen": "good"}) + "\n")
    with pytest.raises(HIRError, match="line 1"):
        load_comparisons(path)


def share_of_a(output, example):
    return output.count("a") / max(len(output), 1)


def test_instructgpt_pipeline_runs_end_to_end(tiny_gpt2_dir, tmp_path):
    # A graded feedback, so that the untrained policy's samples can be ranked at all.
    task = load_task("synthetic/sort", num_examples=40, feedback=share_of_a)
    config = PPOConfig(output_dir=str(tmp_path), iterations=1, batch_size=16, max_new_tokens=6,
                       report_to="none", ptx_coef=1.0, temperature=2.0)  # fmt: skip
    summary = run_instructgpt(tiny_gpt2_dir, task, config, InstructGPTStages(sft_epochs=1))
    assert (tmp_path / "sft" / "model" / "config.json").is_file()
    assert (tmp_path / "ppo-ptx" / "summary.json").is_file()
    assert summary["reward_model"]["groups"] > 0
    metrics = [
        json.loads(line)
        for line in (tmp_path / "ppo-ptx" / "metrics.jsonl").read_text().splitlines()
    ]
    assert "loss_ptx" in metrics[1] and "reward" in metrics[1]


def test_instructgpt_ppo_stage_keeps_the_lora_scope(tiny_gpt2_dir, tmp_path):
    from hir.models.adapters import TrainingScope

    policy = load_policy(tiny_gpt2_dir).set_training_scope(
        TrainingScope(lora_r=4, train_last_layers=1)
    )
    task = load_task("synthetic/sort", num_examples=24, feedback=share_of_a)
    config = PPOConfig(output_dir=str(tmp_path), iterations=1, batch_size=16, max_new_tokens=4,
                       report_to="none", temperature=2.0)  # fmt: skip
    run_instructgpt(policy, task, config, InstructGPTStages(sft_epochs=1))
    ppo_record = json.loads((tmp_path / "ppo" / "config.json").read_text())["config"]
    sft_record = json.loads((tmp_path / "sft" / "config.json").read_text())["config"]
    # Both stages adapt the same last layer with a rank-4 adapter; before the fix, PPO trained
    # every weight of the reloaded SFT model.
    assert ppo_record["training_scope"] == sft_record["training_scope"]
    assert ppo_record["training_scope"]["lora_r"] == 4
    assert ppo_record["training_scope"]["train_last_layers"] == 1


def test_instructgpt_trains_the_reward_model_on_the_prompts_ppo_scores(
    tiny_llama_chat_dir, tmp_path, monkeypatch
):
    """On a chat model every stage reads the task in the chat format: the reward model is
    trained on the prompts that PPO then scores with it (it once saw the plain format)."""
    from hir.models.reward_model import RewardModel
    from hir.recipes import instructgpt

    trained_on, scored = [], []
    real_train, real_score = instructgpt.train_reward_model, RewardModel.score

    def spy_train(policy, groups, **settings):
        trained_on.extend(prompt for prompt, _ in groups)
        return real_train(policy, groups, **settings)

    def spy_score(self, prompts, outputs, **settings):  # the reward model PPO loaded
        scored.extend(prompts)
        return real_score(self, prompts, outputs, **settings)

    monkeypatch.setattr(RewardModel, "score", spy_score)
    monkeypatch.setattr(instructgpt, "train_reward_model", spy_train)
    task = load_task("synthetic/sort", num_examples=24, feedback=share_of_a)
    config = PPOConfig(output_dir=str(tmp_path), iterations=1, batch_size=8, max_new_tokens=6,
                       report_to="none", temperature=2.0)  # fmt: skip
    run_instructgpt(load_policy(tiny_llama_chat_dir), task, config, InstructGPTStages(sft_epochs=1))
    chat_task = task.for_format(chat=True)
    correct = chat_task.correct_instruction
    chat_prompts = {chat_task.prompt(e.query, correct) for e in chat_task.split("train")}
    assert trained_on and scored
    assert set(trained_on) <= chat_prompts and set(scored) <= chat_prompts


def test_compare_puts_the_pipelines_final_methods_side_by_side_on_one_start(
    tiny_gpt2_dir, tmp_path, monkeypatch
):
    """`instructgpt-hir`, `instructgpt-farl` and `instructgpt-ppo` in one comparison: one SFT
    model and reward model for the seed, each final method trained against that reward model."""
    from hir.cli import main
    from hir.recipes import instructgpt

    starts = []
    real_start = instructgpt.instructgpt_start

    def counted_start(*args, **kwargs):
        starts.append(kwargs["reuse"])
        return real_start(*args, **kwargs)

    monkeypatch.setattr("hir.compare.run.instructgpt_start", counted_start)
    feedback = tmp_path / "graded.py"
    feedback.write_text(
        "def share_of_a(output, example):\n    return output.count('a') / max(len(output), 1)\n"
    )
    out = tmp_path / "compare"
    methods = "start,instructgpt-hir,instructgpt-farl,instructgpt-ppo"
    code = main(["compare", "--methods", methods, "--seeds", "0",
                 "--model", tiny_gpt2_dir, "--task", "synthetic/sort", "--num_examples", "24",
                 "--feedback", f"{feedback}:share_of_a", "--iterations", "1", "--batch_size", "8",
                 "--max_new_tokens", "4", "--num_samples", "2", "--temperature", "2.0",
                 "--epochs_per_iteration", "1", "--sft_epochs", "1", "--reward_model_epochs", "1",
                 "--output_dir", str(out)])  # fmt: skip
    assert code == 0
    assert starts == [False, True, True]  # made by the first, reused by the others
    start = out / "instructgpt-start" / "seed-0"
    assert len(list((start / "sft" / "checkpoints").iterdir())) >= 1
    for method in ("instructgpt-hir", "instructgpt-farl", "instructgpt-ppo"):
        config = json.loads((out / method / "seed-0" / "config.json").read_text())["config"]
        assert config["reward_model"] == str(start / "reward_model")
    # PPO without the ptx term: the pipeline's control for what the SFT labels add in stage 3.
    assert config["ptx_coef"] == 0
    assert json.loads((out / "instructgpt-hir" / "seed-0" / "config.json").read_text())["config"]["relabel"] == "percentile"  # fmt: skip
    rows = [r["method"] for r in json.loads((out / "comparison.json").read_text())["table"]]
    assert rows == ["start", "start@instructgpt-hir", "instructgpt-hir", "instructgpt-farl",
                    "instructgpt-ppo"]  # fmt: skip
