"""One process of the distributed tests (`tests/test_distributed.py`), started by torchrun:

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/distributed_run.py \\
        MODE METHOD MODEL_DIR OUTPUT_DIR ITERATIONS LORA_R

MODE `ddp` (accelerate's default), `fsdp2` or `zero3`; METHOD `hir`, `farl`, `sft`, `ppo`,
`grpo`, `rloo`, `nft`,
`instructgpt` (the pipeline, ending in PPO-ptx) or `compare` (the start and HIR, seed 0); LORA_R 0 trains the weights themselves. A run
resumes from the newest checkpoint in OUTPUT_DIR. Each process writes `process-RANK-of-WORLD.json`
in the folder of each model it trains: whether the model is sharded, and how many weight
elements it holds of how many."""

import dataclasses
import json
import os
import sys
from pathlib import Path

import yaml

from hir.models import load_policy
from hir.models.adapters import TrainingScope
from hir.models.speed.sharding import is_sharded
from hir.tasks import load_task
from hir.trainers.farl import FARLConfig, FARLTrainer
from hir.trainers.grpo import GRPOConfig, GRPOTrainer
from hir.trainers.hir import HIRConfig, HIRTrainer
from hir.trainers.nft import NFTConfig, NFTTrainer
from hir.trainers.ppo import PPOConfig, PPOTrainer
from hir.trainers.rloo import RLOOConfig, RLOOTrainer
from hir.trainers.sft import SFTConfig, SFTTrainer

SETTINGS = dict(batch_size=8, max_new_tokens=4, num_samples=3,
                report_to="none", seed=0, device="cpu", resume=True)  # fmt: skip
METHODS = {"hir": (HIRTrainer, HIRConfig), "farl": (FARLTrainer, FARLConfig),
           "sft": (SFTTrainer, SFTConfig), "ppo": (PPOTrainer, PPOConfig),
           "grpo": (GRPOTrainer, GRPOConfig), "rloo": (RLOOTrainer, RLOOConfig),
           "nft": (NFTTrainer, NFTConfig)}  # fmt: skip
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "accelerate"


def set_distributed_type(accelerator, kind) -> None:
    """In accelerate's state that every Accelerator shares (its partial state included)."""
    from accelerate.state import PartialState

    accelerator.state.distributed_type = kind
    PartialState._shared_state["distributed_type"] = kind


def shard_by_hand(kind, attach_plugin) -> None:
    """accelerate (1.15) turns FSDP and DeepSpeed on for accelerator devices only: on CPU its
    launcher quietly runs DDP. So these CPU processes make hir's accelerator a `kind` one by hand,
    `attach_plugin(accelerator)` giving it the plugin a shipped config describes; from there on,
    accelerate's preparation and hir's code run as they do on GPUs."""
    import hir.recipes.instructgpt as instructgpt
    import hir.trainers.loop as online

    build_accelerator = online.build_accelerator

    def build_sharded_accelerator(*args, **kwargs):
        accelerator = build_accelerator(*args, **kwargs)
        set_distributed_type(accelerator, kind)
        attach_plugin(accelerator)
        return accelerator

    online.build_accelerator = build_sharded_accelerator
    instructgpt.build_accelerator = build_sharded_accelerator


def fsdp2_on_cpu() -> None:
    """FSDP2, with the plugin configs/accelerate/fsdp2.yaml describes."""
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    settings = yaml.safe_load((CONFIGS / "fsdp2.yaml").read_text())["fsdp_config"]
    renamed = {"fsdp_version": "fsdp_version", "fsdp_offload_params": "cpu_offload"}
    plugin_args = {renamed.get(k, k.removeprefix("fsdp_")): v for k, v in settings.items()}

    def attach(accelerator):
        accelerator.state.fsdp_plugin = FullyShardedDataParallelPlugin(**plugin_args)

    shard_by_hand(DistributedType.FSDP, attach)


def zero3_on_cpu() -> None:
    """DeepSpeed ZeRO-3, with the plugin configs/accelerate/zero3.yaml describes."""
    from accelerate.utils import DeepSpeedPlugin, DistributedType

    settings = yaml.safe_load((CONFIGS / "zero3.yaml").read_text())["deepspeed_config"]
    os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"  # as the launcher sets it

    def attach(accelerator):
        plugin = DeepSpeedPlugin(**settings)
        accelerator.state.deepspeed_plugins = {"default": plugin}
        plugin.select(_from_accelerator_state=True)

    shard_by_hand(DistributedType.DEEPSPEED, attach)


def record_sharding(model, folder) -> None:
    """`process-RANK-of-WORLD.json` in `folder`: whether `model` is sharded, and how many
    weight elements this process holds of how many."""
    import torch.distributed as dist

    rank, world = dist.get_rank(), dist.get_world_size()
    parameters = list(model.parameters())
    # ZeRO-3 keeps a parameter's shard in `ds_tensor` and its full size in `ds_numel`.
    record = {
        "sharded": is_sharded(model),
        "held": sum(
            getattr(p, "ds_tensor", getattr(p, "_local_tensor", p)).numel() for p in parameters
        ),
        "total": sum(getattr(p, "ds_numel", p.numel()) for p in parameters),
    }
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / f"process-{rank}-of-{world}.json").write_text(json.dumps(record))


def share_of_a(output, example):
    """A graded feedback, so that a tiny model's samples can be ranked."""
    return output.count("a") / max(len(output), 1)


def run_instructgpt(model_dir: str, output_dir: str, iterations: int, lora_r: int) -> None:
    """The pipeline ending in PPO-ptx; each stage's model records its sharding (the SFT and
    PPO runs in their folders, the reward model in OUTPUT_DIR)."""
    import hir.recipes.instructgpt as instructgpt
    from hir.trainers.loop import OnlineTrainer

    train, save_reward_model = OnlineTrainer.train, instructgpt.save_reward_model

    def recorded_train(trainer):
        record_sharding(trainer.policy.model, trainer.output_dir)
        return train(trainer)

    def recorded_save(model, folder, *args, **kwargs):
        record_sharding(model, output_dir)
        return save_reward_model(model, folder, *args, **kwargs)

    OnlineTrainer.train, instructgpt.save_reward_model = recorded_train, recorded_save
    task = load_task("synthetic/sort", num_examples=40, feedback=share_of_a)
    config = PPOConfig(output_dir=output_dir, iterations=iterations, ptx_coef=1.0,
                       temperature=2.0, **SETTINGS)  # fmt: skip
    policy = load_policy(model_dir, device="cpu").set_training_scope(TrainingScope(lora_r=lora_r))
    stages = instructgpt.InstructGPTStages(
        sft_epochs=1, reward_model_epochs=1, reward_model_queries=16
    )
    instructgpt.run_instructgpt(policy, task, config, stages)


def build_trainer(method: str, model_dir: str, output_dir: str, iterations: int, lora_r: int):
    """The trainer of METHOD as the launched processes build it (the tests build it again in
    one process, to compare)."""
    trainer_class, config_class = METHODS[method]
    settings = {**SETTINGS, "epochs_per_iteration": 1}
    if method == "farl":  # a tiny model is never right: FARL keeps every sample, so that it trains
        settings["success_threshold"] = 0.0
    grouped = method in ("grpo", "rloo", "nft")
    if grouped:
        # A graded feedback gives a tiny model's groups a spread; NFT's right: a tenth or more "a".
        # Micro-batches of 7 completions: unequal shares (3 and 4), whose losses must be weighed.
        settings.update(success_threshold=0.1, temperature=2.0, batch_size=7)
    task = load_task("synthetic/sort", num_examples=40, feedback=share_of_a if grouped else None)
    fields = {f.name for f in dataclasses.fields(config_class)}
    config = config_class(output_dir=output_dir, iterations=iterations,
                          **{k: v for k, v in settings.items() if k in fields})  # fmt: skip
    # PPO's reward: the output's length, so that its losses are not all zero on a tiny model.
    reward = {"reward": lambda answer, example: len(answer) / 10}
    # HIR_TEST_SCOPE: the training scope's fields as JSON, in place of LORA_R alone.
    scope = json.loads(os.environ.get("HIR_TEST_SCOPE", "null")) or {"lora_r": lora_r}
    policy = load_policy(model_dir, device="cpu").set_training_scope(TrainingScope(**scope))
    return trainer_class(policy, task, config, **(reward if method == "ppo" else {}))


def run(method: str, model_dir: str, output_dir: str, iterations: int, lora_r: int) -> None:
    trainer = build_trainer(method, model_dir, output_dir, iterations, lora_r)
    policy = trainer.policy
    record_sharding(trainer.policy.model, output_dir)
    trainer.train()
    record_frozen_cache(policy, trainer.model, output_dir)


def record_frozen_cache(policy, trained_model, folder) -> None:
    """`cache-RANK.json`: whether the frozen-layer cache (and each twin) stayed on, what it
    served, and whether it serves the passes of the model as the trainer runs it (`wrapper`)."""
    import torch.distributed as dist

    cache = policy.frozen_cache
    record = None if cache is None else {
        "enabled": cache.enabled, "hits": cache.hits, "misses": cache.misses,
        "twins_enabled": [twin.enabled for twin in policy.frozen.twins],
        "wrapper": type(trained_model).__name__,
        "serves_the_wrapper": policy.frozen.serving(trained_model) is cache,
    }  # fmt: skip
    (Path(folder) / f"cache-{dist.get_rank()}.json").write_text(json.dumps(record))


def run_compare(model_dir: str, output_dir: str, iterations: int) -> None:
    """`hir compare`'s start and HIR rows, seed 0, with `resume`: the launch's main process
    takes the locks, decides for both processes and writes the records and the table."""
    from hir.compare.methods import compare_configs
    from hir.compare.run import Start, run_comparison

    task = load_task("synthetic/sort", num_examples=40)
    settings = {**SETTINGS, "epochs_per_iteration": 1, "iterations": iterations}
    run_comparison(compare_configs(["start", "hir"], settings), [0],
                   lambda seed: Start(task, model_dir), output_dir)  # fmt: skip


if __name__ == "__main__":
    mode, method, model_dir, output_dir, iterations, lora_r = sys.argv[1:7]
    if mode == "fsdp2":
        fsdp2_on_cpu()
    elif mode == "zero3":
        zero3_on_cpu()
    if method == "instructgpt":
        run_instructgpt(model_dir, output_dir, int(iterations), int(lora_r))
    elif method == "compare":
        run_compare(model_dir, output_dir, int(iterations))
    else:
        run(method, model_dir, output_dir, int(iterations), int(lora_r))
