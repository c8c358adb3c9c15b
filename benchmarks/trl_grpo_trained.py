"""TRL's GRPOTrainer trained at the second study's budget on synthetic/count, scored by hir's
evaluation, to set beside hir's `grpo` row (results/smollm2-study-count/).

    python benchmarks/trl_grpo_trained.py --seed 0      # ~1-2 h on 2 CPU cores

The study's settings (configs/smollm2-study.yaml) in TRL's terms: SmolLM2-135M-Instruct under
its chat template, LoRA r=8 (alpha 16) on every linear layer of the last 4 of 30 layers; the
task's training split less its last 20% (hir's validation), shuffled by the seed; 10 rounds of
64 queries x 4 completions (2,560 samples), temperature 0.5, up to 32 new tokens, the task's
feedback as the reward; one optimizer step per 16 completions (16 per round, 160 in all), loss
"dapo", beta 0, learning rate 3e-4 constant, AdamW as hir's. Then the adapter is merged and
the model answers the 200 test queries greedily under the task's instruction, scored by hir's
`evaluate` exactly as every compare row is. Writes results/trl-grpo-count/seed-N.json with the
accuracy, TRL's logged rewards per round, the settings and the versions.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL, TASK = "smollm2-135m-instruct", "synthetic/count"
ROUNDS, QUERIES, SAMPLES, BATCH = 10, 64, 4, 16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=str(ROOT / "results" / "trl-grpo-count"))
    args = parser.parse_args()

    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer
    from trl_grpo import study_lora  # (benchmarks/, beside this script)

    from hir.models import load_policy
    from hir.models.sources import resolve_model
    from hir.online.evaluate import evaluate
    from hir.runs.fileio import atomic_write_json
    from hir.runs.versions import library_versions
    from hir.tasks import load_task

    folder = resolve_model(MODEL)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    task = load_task(TASK, validation_fraction=0.2).for_format(True)
    steps_per_round = QUERIES * SAMPLES // BATCH
    lora = study_lora(model)
    config = GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="trl-grpo-count-"), use_cpu=True, bf16=False,
        report_to="none", save_strategy="no", seed=args.seed,
        per_device_train_batch_size=BATCH, steps_per_generation=steps_per_round,
        num_generations=SAMPLES, max_completion_length=32, temperature=0.5,
        learning_rate=3e-4, lr_scheduler_type="constant", beta=0.0, loss_type="dapo",
        max_steps=steps_per_round * ROUNDS, logging_steps=steps_per_round,
    )  # fmt: skip
    trainer = GRPOTrainer(model=model, processing_class=tokenizer, reward_funcs=[task.trl_reward()],
                          args=config, train_dataset=Dataset.from_list(task.trl_rows(conversational=True)),
                          peft_config=lora)  # fmt: skip
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started

    trained = tempfile.mkdtemp(prefix="trl-grpo-count-merged-")
    trainer.model.merge_and_unload().save_pretrained(trained)
    tokenizer.save_pretrained(trained)
    policy = load_policy(trained, prompt_format="chat")
    result = evaluate(policy, task, split="test", batch_size=64, max_new_tokens=32)
    rewards = [e["reward"] for e in trainer.state.log_history if "reward" in e]
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    atomic_write_json(output / f"seed-{args.seed}.json", {
        "trainer": "trl.GRPOTrainer", "model": MODEL, "task": TASK, "seed": args.seed,
        "test_accuracy": result.accuracy, "test_queries": result.num_examples,
        "commonest_answer": result.commonest_answer, "commonest_answer_share": result.commonest_answer_share,
        "train_rewards_per_round": rewards, "train_seconds": seconds,
        "optimizer_steps": trainer.state.global_step, "samples": ROUNDS * QUERIES * SAMPLES,
        "settings": config.to_dict() | {"lora": {"r": 8, "alpha": 16, "layers": lora.layers_to_transform}},
        "versions": library_versions(),
    })  # fmt: skip
    print(
        f"TRL GRPO, seed {args.seed}: test accuracy {result.accuracy:.3f} ({seconds:.0f} s training)"
    )


if __name__ == "__main__":
    main()
