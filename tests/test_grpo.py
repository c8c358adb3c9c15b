"""GRPO on the loop (hir.trainers.grpo): it learns an easy reward, its first step is the hand
computation of its loss, its groups keep every completion, its KL reads the start, and a killed
run resumes to the unbroken one."""

import json

import pytest
import torch
from helpers import killed_in_update

from hir.losses.grpo import group_advantages
from hir.models import load_policy
from hir.models.adapters import TrainingScope
from hir.tasks import load_task
from hir.trainers.grpo import GRPOConfig, GRPOTrainer


def share_of_a(output, example):
    """A trivially easy graded reward: the share of the letter 'a' in the output."""
    return output.count("a") / max(len(output), 1)


TASK = load_task("synthetic/sort", num_examples=80, feedback=share_of_a)


def _config(output_dir, **overrides):
    settings = dict(output_dir=str(output_dir), iterations=5, batch_size=32, max_new_tokens=4,
                    num_samples=4, learning_rate=3e-3, report_to="none", seed=0, eval_limit=8)  # fmt: skip
    return GRPOConfig(**{**settings, **overrides})


def _history(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_grpo_raises_the_reward_on_an_easy_task(tiny_gpt2_dir, tmp_path):
    GRPOTrainer(tiny_gpt2_dir, TASK, _config(tmp_path)).train()
    rewards = [m["reward"] for m in _history(tmp_path)[1:]]
    assert rewards[-1] > rewards[0] + 0.1, rewards


def test_the_first_step_is_the_hand_computed_loss_over_whole_groups(tiny_gpt2_dir, tmp_path):
    """One step over every completion (a batch holds them all): the ratio to the sampling policy
    is 1, so the "dapo" loss is -sum_i A_i |o_i| / sum_i |o_i|, with A_i the group advantages of
    every sample drawn, identical ones included."""
    config = _config(tmp_path, iterations=1, batch_size=1000, max_queries_per_iteration=6)
    trainer = GRPOTrainer(tiny_gpt2_dir, TASK, config)
    trainer.train()
    samples = trainer.buffer.samples
    assert len(samples) == 6 * 4  # whole groups: duplicates kept
    advantages = group_advantages(torch.tensor([s.score for s in samples]), 4).tolist()
    lengths = [len(s.token_ids) for s in samples]
    expected = -sum(a * n for a, n in zip(advantages, lengths)) / sum(lengths)
    (record,) = _history(tmp_path)[1:]
    assert record["train_steps"] == 1
    # float32 sums of about 100 token terms against float64 ones: n * 2**-24 of their size.
    assert record["loss"] == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_the_kl_is_to_the_start_with_lora_its_adapter_off(tiny_gpt2_dir, tmp_path):
    policy = load_policy(tiny_gpt2_dir).set_training_scope(TrainingScope(lora_r=4))
    trainer = GRPOTrainer(policy, TASK, _config(tmp_path, iterations=2, beta=0.04))
    assert trainer.reference is None  # the adapter off is the start: no copy
    trainer.train()
    kls = [m["kl"] for m in _history(tmp_path)[1:]]
    # The adapter starts at zero: the first step's KL is 0; training moves the policy away.
    assert all(kl >= 0 for kl in kls) and kls[-1] > 0


def test_a_killed_grpo_run_resumes_to_the_unbroken_run(tiny_gpt2_dir, tmp_path, monkeypatch):
    settings = dict(iterations=3, beta=0.04)
    GRPOTrainer(tiny_gpt2_dir, TASK, _config(tmp_path / "whole", **settings)).train()
    with killed_in_update(monkeypatch, GRPOTrainer), pytest.raises(KeyboardInterrupt):
        GRPOTrainer(tiny_gpt2_dir, TASK, _config(tmp_path / "broken", **settings)).train()
    GRPOTrainer(tiny_gpt2_dir, TASK, _config(tmp_path / "broken", resume=True, **settings)).train()
    assert (tmp_path / "broken" / "buffer.jsonl").read_text() == (tmp_path / "whole" / "buffer.jsonl").read_text()  # fmt: skip
    for whole, again in zip(
        _history(tmp_path / "whole"), _history(tmp_path / "broken"), strict=True
    ):
        for key in ("accuracy", "reward", "kl", "loss"):
            assert again.get(key) == whole.get(key), key


def test_bad_grpo_settings_are_one_line():
    from hir.errors import HIRError

    for bad, message in [({"num_samples": 1}, "a group of one"), ({"loss_type": "ppo"}, "loss_type must be one of"),
                         ({"scale_rewards": "prompt"}, "scale_rewards must be one of"), ({"beta": -1.0}, "beta must be >= 0")]:  # fmt: skip
        with pytest.raises(HIRError, match=message):
            GRPOConfig(**bad)


def test_rloo_raises_the_reward_and_its_kl_is_to_the_start(tiny_gpt2_dir, tmp_path):
    from hir.trainers.rloo import RLOOConfig, RLOOTrainer

    settings = dict(output_dir=str(tmp_path), iterations=5, batch_size=32, max_new_tokens=4,
                    num_samples=4, learning_rate=3e-3, report_to="none", seed=0, eval_limit=8)  # fmt: skip
    RLOOTrainer(tiny_gpt2_dir, TASK, RLOOConfig(**settings)).train()
    history = _history(tmp_path)[1:]
    rewards, kls = [m["reward"] for m in history], [m["kl"] for m in history]
    # Up at every iteration (noise alone orders five draws so 1 time in 120), over 3x by the fifth.
    assert rewards == sorted(rewards) and rewards[-1] > 3 * rewards[0], rewards
    # Sampled at the start, the completions' log-ratio to it is 0 (the reference is the start);
    # then the trained policy samples completions it favours over the start.
    assert kls[0] == pytest.approx(0.0, abs=1e-6) and kls[-1] > 0, kls


def test_compare_refuses_methods_that_would_sample_different_budgets(
    tiny_gpt2_dir, tmp_path, capsys
):
    from hir.cli import main
    from hir.compare.methods import compare_configs

    argv = ["compare", "--model", tiny_gpt2_dir, "--task", "synthetic/count", "--methods",
            "start,hir,grpo,rloo", "--seeds", "0", "--output_dir", str(tmp_path / "c")]  # fmt: skip
    assert main(argv) == 2
    assert "(hir 4, grpo 8, rloo 2): set --num_samples" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
    configs = compare_configs(["hir", "grpo", "rloo"], {"num_samples": 4})
    assert {c.num_samples for c in configs.values()} == {4}
    assert compare_configs(["hir", "grpo+num_samples=8"], {})["grpo+num_samples=8"].num_samples == 8
