"""hir's GRPO and RLOO losses equal TRL's own trainers' (trl==1.16.0, the `dev` extra) on the
same tensors: the same tiny model, prompt and completion ids, advantages and old log-probs, the
loss and every parameter's gradient. TRL's side is its trainer's `_compute_loss`."""

import pytest
import torch
from helpers import float32_reordering_tolerance

from hir.losses.grpo import clipped_sequence_loss, clipped_token_loss

trl = pytest.importorskip("trl", reason="the TRL cross-check needs trl (pip install -e '.[dev]')")

PROMPTS, COMPLETION = 4, 3  # four completions of three tokens, two groups of two


def fixed_batch(vocab_size: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    prompt_ids = torch.randint(5, vocab_size, (PROMPTS, 5), generator=generator)
    completion_ids = torch.randint(5, vocab_size, (PROMPTS, COMPLETION), generator=generator)
    completion_mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 1, 1], [1, 0, 0]])
    return {
        "prompt_ids": prompt_ids,
        "prompt_mask": torch.ones_like(prompt_ids),
        "completion_ids": completion_ids,
        "completion_mask": completion_mask,
        "advantages": torch.tensor([0.7, -0.7, 1.3, -1.3]),
        # The sampling policy's log-probs, a little off the model's, so that some ratios clip.
        "old_per_token_logps": -torch.rand(PROMPTS, COMPLETION, generator=generator) * 6,
        "ref_per_token_logps": -torch.rand(PROMPTS, COMPLETION, generator=generator) * 6,
        "num_items_in_batch": completion_mask.sum(),
    }


def per_token_logprobs(model, batch: dict) -> torch.Tensor:
    """log pi(completion token) after the prompt and the completion before it."""
    input_ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    logits = model(input_ids=input_ids, attention_mask=mask).logits[:, -COMPLETION - 1 : -1]
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, batch["completion_ids"].unsqueeze(-1)).squeeze(-1)  # fmt: skip


def gradients(model) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def assert_equal_to_rounding(ours, theirs, our_gradients, their_gradients, model_dir) -> None:
    """The same maths on both sides, its sums perhaps in another order: the loss within the
    model's reordering bound, each gradient within it relative to the tensor's largest entry."""
    tolerance = float32_reordering_tolerance(model_dir)
    assert ours.item() == pytest.approx(theirs.item(), rel=0, abs=tolerance)
    assert our_gradients.keys() == their_gradients.keys()
    for name, gradient in our_gradients.items():
        scale = their_gradients[name].abs().max().item()
        assert (gradient - their_gradients[name]).abs().max().item() <= tolerance * max(
            scale, 1e-12
        ), name


def trl_trainer(kind: str, model_dir: str, tmp_path, **settings):
    from datasets import Dataset

    config_class = {"grpo": trl.GRPOConfig, "rloo": trl.RLOOConfig}[kind]
    trainer_class = {"grpo": trl.GRPOTrainer, "rloo": trl.RLOOTrainer}[kind]
    shape = dict(per_device_train_batch_size=PROMPTS, num_generations=2, max_completion_length=COMPLETION)  # fmt: skip
    args = config_class(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none",
                        **{**shape, **settings})  # fmt: skip
    trainer = trainer_class(model=model_dir, reward_funcs=lambda completions, **kwargs: [0.0] * len(completions),
                            args=args, train_dataset=Dataset.from_dict({"prompt": ["a", "b", "c", "d"]}))  # fmt: skip
    trainer.model.eval()  # no dropout, and no gradient-accumulation factor: the loss alone
    return trainer


@pytest.mark.parametrize(
    "settings",
    [
        {"loss_type": "dapo"},
        {"loss_type": "grpo"},
        {"loss_type": "bnpo", "epsilon_high": 0.28},
        {"loss_type": "dr_grpo", "beta": 0.04},
    ],
    ids=["dapo", "grpo", "bnpo-clip-higher", "dr_grpo-kl"],
)
def test_grpo_loss_and_gradients_equal_trls(tiny_gpt2_dir, tmp_path, settings):
    trainer = trl_trainer("grpo", tiny_gpt2_dir, tmp_path, **settings)
    model = trainer.model
    batch = fixed_batch(model.config.vocab_size)
    model.zero_grad()
    theirs = trainer._compute_loss(model, batch)
    theirs.backward()
    their_gradients = gradients(model)

    model.zero_grad()
    ours = clipped_token_loss(
        per_token_logprobs(model, batch), batch["old_per_token_logps"], batch["advantages"],
        batch["completion_mask"], loss_type=settings["loss_type"], epsilon_low=0.2,
        epsilon_high=settings.get("epsilon_high", 0.2), beta=settings.get("beta", 0.0),
        ref_logprobs=batch["ref_per_token_logps"], max_completion_length=COMPLETION,
        num_tokens=batch["num_items_in_batch"],
    )  # fmt: skip
    ours.backward()
    assert_equal_to_rounding(ours, theirs, gradients(model), their_gradients, tiny_gpt2_dir)


def test_rloo_loss_and_gradients_equal_trls(tiny_gpt2_dir, tmp_path):
    trainer = trl_trainer("rloo", tiny_gpt2_dir, tmp_path)
    model = trainer.model
    batch = fixed_batch(model.config.vocab_size)
    batch["old_logps"] = (batch["old_per_token_logps"] * batch["completion_mask"]).sum(-1)
    model.zero_grad()
    theirs = trainer._compute_loss(model, batch)
    theirs.backward()
    their_gradients = gradients(model)

    model.zero_grad()
    ours = clipped_sequence_loss(per_token_logprobs(model, batch), batch["old_logps"],
                                 batch["advantages"], batch["completion_mask"])  # fmt: skip
    ours.backward()
    assert_equal_to_rounding(ours, theirs, gradients(model), their_gradients, tiny_gpt2_dir)


def test_trls_trainer_learns_from_a_hir_tasks_feedback(tiny_gpt2_dir, tmp_path):
    """The two contracts meet: TRL's GRPOTrainer, given a hir task's feedback as its reward
    function, scores every completion exactly as hir scores it."""
    from datasets import Dataset

    from hir.tasks import load_task

    task = load_task("synthetic/count", num_examples=20)
    reward = task.trl_reward()
    seen = []

    def recorded(prompts, completions, example_id, **kwargs):
        scores = reward(prompts, completions, example_id, **kwargs)
        seen.extend(zip(completions, example_id, scores))
        return scores

    args = trl.GRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none",
                          per_device_train_batch_size=4, num_generations=4, max_completion_length=4,
                          max_steps=1, logging_steps=1)  # fmt: skip
    trainer = trl.GRPOTrainer(model=tiny_gpt2_dir, reward_funcs=[recorded], args=args,
                              train_dataset=Dataset.from_list(task.trl_rows()))  # fmt: skip
    trainer.train()
    examples = {e.id: e for e in task.examples}
    assert len(seen) >= 4
    for completion, example_id, score in seen:
        assert score == task.score(completion, examples[example_id])  # extracted, then checked
    logged = [entry for entry in trainer.state.log_history if "reward" in entry]
    assert logged and logged[0]["reward"] == pytest.approx(sum(s for *_, s in seen) / len(seen))


def scored_by_trl(trainer, prompts: list[str]) -> tuple[dict, list[float], list[torch.Tensor]]:
    """TRL's trainer generates and scores `num_generations` completions of each prompt; returns
    its output, the rewards its reward function gave, and every per-token log-prob tensor it
    computed (the sampling policy's, then the reference's)."""
    rewards, logps = [], []
    compute = trainer._get_per_token_logps_and_entropies

    def recorded(*args, **kwargs):
        result = compute(*args, **kwargs)
        logps.append(result[0])
        return result

    def reward(completions, **kwargs):
        scores = [float(len(c) % 5) for c in completions]  # spread within and across groups
        rewards.extend(scores)
        return scores

    trainer._get_per_token_logps_and_entropies = recorded
    trainer.reward_funcs = [reward]
    generations = trainer.num_generations
    with torch.no_grad():
        output = trainer._generate_and_score_completions([{"prompt": p} for p in prompts for _ in range(generations)])  # fmt: skip
    return output, rewards, logps


@pytest.mark.parametrize("normalize", [False, True], ids=["raw", "normalized"])
def test_rloo_advantages_equal_trls_trainer(tiny_gpt2_dir, tmp_path, normalize):
    """RLOO's advantages as TRL's RLOOTrainer computes them from its own samples: the summed
    first-order log-ratio to the reference taken from the reward (beta 0.05), then the
    leave-one-out baseline, optionally standardized. The reference is moved off the start so
    that the KL term is not zero."""
    from hir.losses.grpo import leave_one_out_advantages, rewards_with_kl_penalty

    trainer = trl_trainer("rloo", tiny_gpt2_dir, tmp_path, beta=0.05, normalize_advantages=normalize,
                          per_device_train_batch_size=8, num_generations=4, max_completion_length=6)  # fmt: skip
    with torch.no_grad():
        for parameter in trainer.ref_model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    output, rewards, (old, ref) = scored_by_trl(trainer, ["a", "b"])
    mask = output["completion_mask"].float()
    penalized = rewards_with_kl_penalty(torch.tensor(rewards), old, ref, mask, beta=0.05)
    ours = leave_one_out_advantages(penalized, 4, normalize=normalize)
    assert (ours != 0).any() and ((old - ref) * mask).abs().sum() > 0
    # The same float32 operations in the same order (the tensors are TRL's own).
    torch.testing.assert_close(ours, output["advantages"], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("scale_rewards", ["group", "batch", "none"])
def test_grpo_advantages_equal_trls_trainer(tiny_gpt2_dir, tmp_path, scale_rewards):
    from hir.losses.grpo import group_advantages

    trainer = trl_trainer("grpo", tiny_gpt2_dir, tmp_path, scale_rewards=scale_rewards,
                          per_device_train_batch_size=8, num_generations=4, max_completion_length=6)  # fmt: skip
    output, rewards, _ = scored_by_trl(trainer, ["a", "b"])
    ours = group_advantages(torch.tensor(rewards), 4, scale_rewards)
    assert (ours != 0).any()
    torch.testing.assert_close(ours, output["advantages"], rtol=1e-6, atol=1e-6)
