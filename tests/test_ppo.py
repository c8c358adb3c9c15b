import json

import torch

from hir.sampling import Sample
from hir.tasks import load_task
from hir.trainers.ppo import PPOConfig, PPOTrainer


def share_of_a(output, example):
    """A trivially easy graded reward: the share of the letter 'a' in the output."""
    return output.count("a") / max(len(output), 1)


def _config(model_dir, output_dir, **overrides):
    settings = dict(model=str(model_dir), task="synthetic/sort", output_dir=str(output_dir), num_examples=80,
                    iterations=5, batch_size=32, max_new_tokens=4, num_samples=4, learning_rate=3e-3,
                    kl_coef=0.0, ppo_epochs=2, report_to="none", seed=0, eval_limit=8)  # fmt: skip
    return PPOConfig(**{**settings, **overrides})


def test_ppo_raises_the_reward_on_an_easy_task(tiny_gpt2_dir, tmp_path):
    task = load_task("synthetic/sort", num_examples=80, feedback=share_of_a)
    trainer = PPOTrainer(tiny_gpt2_dir, task, _config(tiny_gpt2_dir, tmp_path))
    trainer.train()
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()][
        1:
    ]
    rewards = [m["reward"] for m in metrics]
    assert rewards[-1] > rewards[0] + 0.1, rewards
    for key in ("kl", "clip_fraction", "loss_value", "loss_policy", "sample_accuracy"):
        assert key in metrics[-1], key


def test_ppo_works_for_t5_and_its_reference_stays_the_start_after_resume(tiny_t5_dir, tmp_path):
    task = load_task("synthetic/sort", num_examples=40, feedback=share_of_a)
    PPOTrainer(
        tiny_t5_dir, task, _config(tiny_t5_dir, tmp_path, iterations=1, kl_coef=0.05)
    ).train()
    resumed = PPOTrainer(
        tiny_t5_dir, task, _config(tiny_t5_dir, tmp_path, iterations=2, resume=True)
    )
    start = PPOTrainer(tiny_t5_dir, task, _config(tiny_t5_dir, tmp_path / "fresh", iterations=0))
    for a, b in zip(resumed.reference.model.parameters(), start.policy.model.parameters()):
        assert torch.equal(a, b)
    assert any(
        not torch.equal(a, b)
        for a, b in zip(resumed.policy.model.parameters(), start.policy.model.parameters())
    )
    assert resumed.train()["iterations"] == 2


def test_ppo_scores_the_tokens_as_sampled_not_a_re_encoding(tiny_gpt2_dir, tmp_path, monkeypatch):
    trainer = PPOTrainer(tiny_gpt2_dir, "synthetic/sort", _config(tiny_gpt2_dir, tmp_path))
    example = trainer.train_examples[0]
    tokenizer = trainer.policy.tokenizer
    canonical = trainer.policy.output_ids([example.target])[0]
    # The same text spelled one byte-level token per character: a segmentation the tokenizer
    # would never produce, but a policy can sample.
    spelled = tuple(
        tokenizer.convert_tokens_to_ids(list(tokenizer.convert_ids_to_tokens(canonical[0])))
    ) + tuple(canonical[1:])
    assert list(spelled) != canonical
    assert tokenizer.decode(spelled, skip_special_tokens=True) == tokenizer.decode(
        canonical, skip_special_tokens=True
    )
    target = trainer.relabeler.target_instruction
    trainer.buffer.add([Sample(1, example.id, target, example.target, 1.0, spelled)])
    scored = []
    monkeypatch.setattr(
        trainer,
        "_score_rollout",
        lambda batch, scores: scored.append(batch) or {"kl": 0.0, "scores": scores},
    )
    monkeypatch.setattr(trainer, "_ppo_step", lambda item: {})
    trainer._train_on_buffer(1)
    (batch,) = scored
    assert [t for t in batch.labels[0].tolist() if t != -100] == list(spelled)
