"""The InstructGPT pipeline in one call, ending in the method its config names:

    1. SFT on the labels                               -> output_dir/sft/ (its model in sft/model)
    2. a reward model, trained on the SFT policy's samples ranked by the feedback function
                                                       -> output_dir/reward_model/
    3. PPO-ptx against the reward model, with the SFT data as the "pretraining" set (InstructGPT);
       or HIR relabeling by the reward's percentiles, or FARL keeping its best-scored share,
       from the same SFT model with the same reward model -> output_dir/ppo|hir|farl/

Each stage writes its folder whole (a run's checkpoints, or one rename), so a pipeline killed
at any point continues with `resume`: finished stages are reused, an interrupted run resumes.
Under FSDP2 every stage trains sharded; the ranking samples and the reward model's scores come
from whole models, one per process (each process takes its share of the queries).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from accelerate.utils import DistributedType, set_seed

from hir.errors import HIRError
from hir.models import Policy, load_policy
from hir.models.adapters import TrainingScope
from hir.models.reward_model import REWARD_CARD, RewardCard, RewardModel, save_reward_model
from hir.models.speed.sharding import is_main_process
from hir.online.parallel import on_shares
from hir.online.sampling import sample_outputs
from hir.options import flag_help
from hir.recipes.export import export_model
from hir.runs.fileio import atomic_write_json
from hir.runs.folders import RunFolder, check_folder, mark_folder
from hir.runs.staging import remove_stale_staging
from hir.tasks.base import Task
from hir.trainers import get_method
from hir.trainers.optimization import build_accelerator
from hir.trainers.reward_model_trainer import rankings_from_feedback, train_reward_model
from hir.trainers.run_config import SamplingConfig
from hir.trainers.sft import SFTConfig, SFTTrainer

# --final_method -> (registered method, the settings that make it, as the CLI's defaults)
FINAL_METHODS: dict[str, tuple[str, dict]] = {
    "ppo-ptx": ("ppo", {"ptx_coef": 27.8}),
    "ppo": ("ppo", {"ptx_coef": 0.0}),
    "hir": ("hir", {"relabel": "percentile"}),
    "farl": ("farl", {"keep_top_share": 0.25}),
}


@dataclass(frozen=True)
class InstructGPTStages:
    """How long stages 1 and 2 train (each field is also a `hir instructgpt` flag)."""

    sft_iterations: int = field(default=1, metadata=flag_help("SFT stage: iterations (each evaluated)"))  # fmt: skip
    sft_epochs: int = field(default=10, metadata=flag_help("SFT stage: epochs per iteration"))
    reward_model_epochs: int = field(default=2, metadata=flag_help("epochs of the reward model's training"))  # fmt: skip
    reward_model_queries: int | None = field(default=None, metadata=flag_help("rank the samples of this many training queries (a seeded random subset; none: all)"))  # fmt: skip

    def __post_init__(self) -> None:  # checked before any stage runs
        for ok, message in [
            (self.sft_iterations >= 0, f"--sft_iterations must be >= 0, got {self.sft_iterations}"),
            (self.sft_epochs >= 1, f"--sft_epochs must be >= 1, got {self.sft_epochs}"),
            (self.reward_model_epochs >= 1, f"--reward_model_epochs must be >= 1, got {self.reward_model_epochs}"),
            (self.reward_model_queries is None or self.reward_model_queries >= 1,
             f"--reward_model_queries must be >= 1 (or left out: all), got {self.reward_model_queries}"),
        ]:  # fmt: skip
            if not ok:
                raise HIRError(message)


@dataclass(frozen=True)
class InstructGPTStart:
    """What every final method starts from: the SFT model, the reward model, PPO-ptx's pairs."""

    sft_model: Path
    reward_model: Path
    ptx_pairs: list[tuple[str, str]]
    sft_summary: dict
    reward_card: dict
    chat: bool  # the policy's prompt format and what it trains, for every stage
    scope: TrainingScope


def run_instructgpt(
    model: str | Policy, task: Task, config: SamplingConfig,
    stages: InstructGPTStages = InstructGPTStages(),
) -> dict:  # fmt: skip
    """The pipeline into `config.output_dir`, ending in `config`'s method (a PPOConfig: PPO, or
    PPO-ptx with `ptx_coef`; an HIRConfig with graded relabeling; a FARLConfig with
    `keep_top_share`). The run settings of `config` (learning rate, batch size, evaluation...)
    also set the SFT stage; `stages` says how long stages 1 and 2 train."""
    began = time.perf_counter()
    root = Path(config.output_dir)
    check_folder(root, "instructgpt")  # a folder of anything else is refused before any stage
    start = instructgpt_start(model, task, config, root, stages, reuse=config.resume)
    method = final_method_name(config)
    final = run_final_method(
        start, task, dataclasses.replace(config, output_dir=str(root / method))
    )
    summary = {
        "method": f"instructgpt (sft -> reward model -> {method})",
        "task": task.name,
        "model": str(model if not isinstance(model, Policy) else model.source),
        "initial_accuracy": start.sft_summary["initial_accuracy"],
        "sft_accuracy": start.sft_summary["final_accuracy"],
        "final_accuracy": final["final_accuracy"],
        "reward_model": start.reward_card.get("training") or {},
        # The whole pipeline in this process: SFT, sampling for the rankings, the reward model
        # and the final method (a resumed pipeline counts the part it ran).
        "wall_seconds": round(time.perf_counter() - began, 2),
        "config": config.to_dict(),
    }
    if is_main_process():
        atomic_write_json(RunFolder(root).summary, summary)
    return summary


def instructgpt_start(
    model: str | Policy, task: Task, config: SamplingConfig, root: Path,
    stages: InstructGPTStages, *, reuse: bool,
) -> InstructGPTStart:  # fmt: skip
    """Stages 1 and 2 into `root` (sft/, reward_model/); with `reuse`, a stage whose folder is
    whole is read back, and an interrupted SFT run resumes."""
    final_trainer(config).check_reward_settings(config)  # now, not after two stages of training
    if config.reward_model:
        raise HIRError(
            "the InstructGPT pipeline trains its own reward model (stage 2): leave out "
            "--reward_model, or train with `hir train --reward_model` instead"
        )
    accelerator = build_accelerator(config.device, config.mixed_precision,
                                    config.gradient_accumulation_steps)  # fmt: skip
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        raise HIRError(
            "the InstructGPT pipeline does not run under DeepSpeed (it trains three models, "
            "and PPO's policy and value model share one loss); shard it with FSDP2 "
            "(configs/accelerate/fsdp2.yaml)"
        )
    policy = model if isinstance(model, Policy) else load_policy(model)
    chat, scope = policy.chat, policy.training_scope
    sft_model, rm_folder = root / "sft" / "model", root / "reward_model"
    if reuse and accelerator.is_main_process:
        for folder in (sft_model, rm_folder):
            remove_stale_staging(folder)  # left by a pipeline killed while writing it
    if not (reuse and sft_model.is_dir()):
        sft_config = SFTConfig(**{**config.run_settings(), "output_dir": str(root / "sft"),
                                  "iterations": stages.sft_iterations,
                                  "epochs_per_iteration": stages.sft_epochs,
                                  "resume": reuse,
                                  "overwrite_output_dir": config.overwrite_output_dir and not reuse})  # fmt: skip
        sft_trainer = SFTTrainer(policy, task, sft_config)  # checks the data and the feedback
        if accelerator.is_main_process:  # all checked: the folder becomes the pipeline's
            mark_folder(root, "instructgpt", "hir instructgpt")
        sft_trainer.train()
        if accelerator.is_main_process:  # the last checkpoint, adapters merged, in one rename
            export_model(root / "sft", sft_model, merge=True, overwrite=True)
        accelerator.wait_for_everyone()
    del policy
    gc.collect()
    task = task.for_format(chat)  # in the policy's prompt format: chat template, extraction
    instruction = config.correct_instruction or task.correct_instruction
    if not (reuse and rm_folder.is_dir()):
        set_seed(config.seed)  # the same samples and head whether or not stage 1 ran here
        sft_policy = reload_sft(sft_model, chat, scope)
        queries = task.split("train")
        if stages.reward_model_queries and stages.reward_model_queries < len(queries):
            queries = random.Random(config.seed).sample(queries, stages.reward_model_queries)
        samples = on_shares(accelerator, queries, lambda mine: sample_outputs(
            sft_policy, task, mine, instruction=instruction, iteration=0,
            num_samples=config.num_samples, temperature=config.temperature,
            top_k=config.top_k, top_p=config.top_p, max_new_tokens=config.max_new_tokens,
            batch_size=config.sampling_batch_size, progress="reward model: sampling",
        ))  # fmt: skip
        groups = rankings_from_feedback(task, samples, instruction)
        reward_model, metrics = train_reward_model(
            sft_policy, groups, epochs=stages.reward_model_epochs, learning_rate=config.learning_rate,
            seed=config.seed, accelerator=accelerator,
        )  # fmt: skip
        if accelerator.is_main_process:
            print(f"hir instructgpt: reward model on {len(groups)} ranked groups: {metrics}")
        card = RewardCard("chat" if chat else "plain", instruction, task.name,
                          {**metrics, "groups": len(groups)})  # fmt: skip
        save_reward_model(reward_model, rm_folder, card,
                          unsharded=lambda: RewardModel(reload_sft(sft_model, chat, scope)))  # fmt: skip
        accelerator.wait_for_everyone()
        del sft_policy, reward_model
        gc.collect()
    ptx_pairs = [(task.prompt(e.query, instruction), e.target) for e in task.split("train")]
    return InstructGPTStart(
        sft_model, rm_folder, ptx_pairs,
        json.loads(RunFolder(root / "sft").summary.read_text(encoding="utf-8")),
        json.loads((rm_folder / REWARD_CARD).read_text(encoding="utf-8")), chat, scope,
    )  # fmt: skip


def final_method_name(config: SamplingConfig) -> str:
    """The --final_method that `config` runs: ppo-ptx, ppo, hir or farl."""
    for name, (registered, _) in FINAL_METHODS.items():
        if get_method(registered)[1] is type(config):
            ptx = getattr(config, "ptx_coef", 0)
            return {"ppo": "ppo-ptx" if ptx else "ppo"}.get(registered, name)
    raise HIRError(
        f"the InstructGPT pipeline ends in PPO(-ptx), HIR or FARL: give a PPOConfig, HIRConfig "
        f"or FARLConfig, not a {type(config).__name__}"
    )


def run_final_method(start: InstructGPTStart, task: Task, config: SamplingConfig) -> dict:
    """Stage 3: `config`'s method from the SFT model, against the reward model (its scores
    replace the task's feedback in training), in `config.output_dir`; returns its summary."""
    trainer_class = final_trainer(config)
    config = dataclasses.replace(config, reward_model=str(start.reward_model))
    extra = {"ptx_pairs": start.ptx_pairs} if trainer_class.method == "ppo" else {}
    policy = reload_sft(start.sft_model, start.chat, start.scope)
    return trainer_class(policy, task, config, **extra).train()


def final_trainer(config: SamplingConfig) -> type:
    """The trainer class of the pipeline's final method, named by `config`'s class."""
    return get_method(FINAL_METHODS[final_method_name(config)][0])[0]


def reload_sft(folder: Path, chat: bool, scope: TrainingScope) -> Policy:
    """The saved SFT model (a LoRA adapter merged in), in the prompt format and training scope
    of the policy that was trained: the next stage adapts the same layers, with a fresh
    adapter whose "off" state, PPO's reference, is the SFT policy."""
    policy = load_policy(folder, prompt_format="chat" if chat else "plain")
    return policy.set_training_scope(scope)
