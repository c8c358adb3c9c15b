"""The one optimizer step (hir.trainers.optimization): checked by hand, and taken by every trainer."""

import torch

from hir.models import load_policy
from hir.tasks import load_task
from hir.trainers import epochs, ppo, reward_model_trainer
from hir.trainers.hir import HIRConfig, HIRTrainer
from hir.trainers.optimization import build_accelerator, optimizer_step
from hir.trainers.ppo import PPOConfig, PPOTrainer


def test_a_clipped_accumulated_step_by_hand():
    """loss = w . x has gradient x; two micro-batches accumulate (x1 + x2) / 2, clipped to norm
    1, and SGD with lr 0.5 moves w by -0.5 * g / |g| on the second micro-batch only."""
    accelerator = build_accelerator("cpu", "no", gradient_accumulation_steps=2)
    model = torch.nn.Linear(2, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    model, optimizer = accelerator.prepare(model, optimizer)
    inputs = [torch.tensor([[3.0, 0.0]]), torch.tensor([[3.0, 8.0]])]
    for step, x in enumerate(inputs):
        optimizer_step(accelerator, [model], [optimizer], [],
                       lambda x=x: (model(x).sum(), {}), max_grad_norm=1.0)  # fmt: skip
        if step == 0:  # accumulating: no step yet
            assert torch.equal(model.weight, torch.zeros(1, 2))
    gradient = torch.tensor([3.0, 4.0])  # ((3, 0) + (3, 8)) / 2, norm 5
    assert torch.allclose(model.weight.detach(), -0.5 * gradient / 5)


def test_every_trainer_steps_through_the_one_optimizer_step(tiny_gpt2_dir, tmp_path, monkeypatch):
    steps = {}

    def spying(where):
        def spy(accelerator, models, optimizers, schedulers, compute_loss, max_grad_norm=None):
            steps.setdefault(where, []).append(len(models))
            return optimizer_step(accelerator, models, optimizers, schedulers, compute_loss,
                                  max_grad_norm)  # fmt: skip

        return spy

    for where, module in (("epochs", epochs), ("ppo", ppo), ("reward model", reward_model_trainer)):
        monkeypatch.setattr(module, "optimizer_step", spying(where))
    task = load_task("synthetic/sort", num_examples=24)
    quick = dict(iterations=1, batch_size=8, max_new_tokens=4, report_to="none", num_samples=2)
    HIRTrainer(tiny_gpt2_dir, task, HIRConfig(output_dir=str(tmp_path / "hir"), epochs_per_iteration=1, **quick)).train()  # fmt: skip
    PPOTrainer(tiny_gpt2_dir, task, PPOConfig(output_dir=str(tmp_path / "ppo"), ppo_epochs=1, **quick)).train()  # fmt: skip
    groups = [(f"Q: {i}\nA:", ["apple kiwi", "dog"]) for i in range(4)]
    reward_model_trainer.train_reward_model(load_policy(tiny_gpt2_dir), groups, epochs=1, learning_rate=1e-3,
                                    groups_per_step=2)  # fmt: skip
    assert set(steps["epochs"]) == {1}  # the policy
    assert set(steps["ppo"]) == {2}  # the policy and the value model, in one step
    assert steps["reward model"] == [1, 1]  # 4 groups, 2 per step
