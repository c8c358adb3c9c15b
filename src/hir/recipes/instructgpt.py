"""The InstructGPT pipeline in one call: SFT on the labels -> a reward model trained on the SFT
policy's samples ranked by the feedback function -> PPO-ptx against the reward model, with the
SFT data as the "pretraining" set. Each stage writes to its own folder under output_dir."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from hir.models import Policy, load_policy
from hir.online.sampling import sample_outputs
from hir.runs.fileio import atomic_write_json
from hir.tasks.base import Task
from hir.trainers.ppo import PPOConfig, PPOTrainer
from hir.trainers.reward_model import rankings_from_feedback, train_reward_model
from hir.trainers.sft import SFTConfig, SFTTrainer


def run_instructgpt(
    model: str | Policy, task: Task, config: PPOConfig, sft_iterations: int = 1, sft_epochs: int = 10,
    reward_model_epochs: int = 2,
) -> dict:  # fmt: skip
    """The run settings of `config` (its `RunConfig` part: learning rate, batch size,
    evaluation...) also set the SFT stage, which trains `sft_iterations` x `sft_epochs` epochs
    with SFTConfig's other defaults. Every stage reads the task in the SFT policy's prompt
    format, so the reward model is trained on the prompts PPO later scores with it."""
    began = time.perf_counter()
    root = Path(config.output_dir)
    sft_config = SFTConfig(**{**config.run_settings(), "output_dir": str(root / "sft"),
                              "iterations": sft_iterations, "epochs_per_iteration": sft_epochs})  # fmt: skip
    sft = SFTTrainer(model, task, sft_config)
    sft_summary = sft.train()
    sft.policy.save(root / "sft" / "model")

    instruction = sft.target_instruction
    task = sft.task  # in the policy's prompt format: chat template, answer extraction, hint
    samples = sample_outputs(
        sft.policy, task, sft.train_examples, instruction=instruction, iteration=0,
        num_samples=config.num_samples, temperature=config.temperature,
        max_new_tokens=config.max_new_tokens, batch_size=config.sampling_batch_size,
    )  # fmt: skip
    groups = rankings_from_feedback(task, samples, instruction)
    reward_model, reward_metrics = train_reward_model(
        sft.policy, groups, epochs=reward_model_epochs, learning_rate=config.learning_rate,
        seed=config.seed,
    )  # fmt: skip
    print(f"hir instructgpt: reward model on {len(groups)} ranked groups: {reward_metrics}")

    ptx_pairs = [(task.prompt(e.query, instruction), e.target) for e in sft.train_examples]
    ppo_config = dataclasses.replace(config, output_dir=str(root / "ppo"))
    ppo = PPOTrainer(
        _reload_like(sft.policy, root / "sft" / "model"), task, ppo_config,
        reward=reward_model.as_reward_function(),
        ptx_pairs=ptx_pairs,
    )  # fmt: skip
    ppo_summary = ppo.train()
    summary = {
        "method": "instructgpt (sft -> reward model -> ppo-ptx)",
        "task": task.name,
        "model": str(model),
        "initial_accuracy": sft_summary["initial_accuracy"],
        "sft_accuracy": sft_summary["final_accuracy"],
        "final_accuracy": ppo_summary["final_accuracy"],
        "reward_model": {**reward_metrics, "groups": len(groups)},
        # The whole pipeline: SFT, sampling for the rankings, the reward model and PPO.
        "wall_seconds": round(time.perf_counter() - began, 2),
        "config": config.to_dict(),
    }
    atomic_write_json(root / "summary.json", summary)
    return summary


def _reload_like(trained: Policy, folder: Path) -> Policy:
    """The saved SFT model (a LoRA adapter merged in), in the prompt format and training scope of
    the policy that was trained: PPO then adapts the same layers, with a fresh adapter whose
    "off" state, PPO's reference, is the SFT policy."""
    policy = load_policy(folder, prompt_format="chat" if trained.chat else "plain")
    return policy.set_training_scope(trained.training_scope)
