"""The online loop every method shares (docs/method.md section 2):

    iteration 0:  evaluate the starting policy
    iteration i:  sample -> score -> buffer -> training_items -> update -> evaluate -> checkpoint

`OnlineTrainer` owns what all methods share: the run folder, accelerate, sampling, the replay
buffer, evaluation, logging, checkpoints and resume, the summary. A method is a sibling subclass
that declares `method`, `config_class` and `samples` (whether it samples each iteration) and
fills in two hooks:

- `training_items(iteration)`: what to learn from this iteration (HIR: every buffered sample
  relabeled; FARL: the correct ones; SFT: the labeled queries; PPO: this iteration's rollout);
- `update(items, iteration)`: one iteration's training on them; returns its metrics.

Optional: `keeps_duplicate_samples` (GRPO's and RLOO's groups keep a query's identical
samples), `feedback_share()` (HIR's feedback budget), `before_prepare` with
`extra_state` / `load_extra_state` for methods that keep more state than the policy and its
optimizer (PPO's value model). `SupervisedTrainer` is the `update` of the methods that train
supervised epochs on a CE loss (FARL, SFT); HIR writes its own `update` and `loss` in one file
(trainers/hir.py), on the same pieces (`weighted`, `train_epochs`). The loop reads nothing else
of a method: no field of its config by name, no type probe.

    trainer = HIRTrainer("path/or/hub-id", "synthetic/count", HIRConfig(iterations=5))
    summary = trainer.train()          # resumes first when config.resume is set
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import DistributedType, set_seed
from transformers import PreTrainedModel, get_scheduler

from hir.errors import HIRError
from hir.losses import answer_balanced_weights, label_smoothed_nll
from hir.models import Policy, as_policy, describe_model
from hir.models.adapters import initialize_adapter
from hir.models.speed.sharding import (
    full_optimizer_state,
    full_state_dict,
    full_weights,
    is_sharded,
    load_optimizer_state,
    share_tied_embeddings,
)
from hir.online.buffer import ReplayBuffer
from hir.online.evaluate import evaluate_with_config
from hir.online.parallel import on_shares
from hir.online.sampling import sample_outputs
from hir.runs.checkpoint import (
    capture_rng,
    checkpoint_problem,
    list_checkpoints,
    load_training_state,
    remove_run_files,
    restore_rng,
    save_checkpoint,
    save_training_state,
)
from hir.runs.crash_points import crash_point
from hir.runs.fileio import (
    atomic_write_json,
    atomic_write_jsonl,
    read_jsonl,
    remove_stale_temporary_files,
)
from hir.runs.folders import BUFFER, HISTORY, RunFolder, check_folder, mark_folder
from hir.runs.lock import folder_lock
from hir.runs.report import evaluated_records, plot_accuracy
from hir.runs.tracking import RunLogger, parse_report_to
from hir.runs.versions import library_versions
from hir.tasks import Example, Task, load_task
from hir.tasks.base import callable_name
from hir.tasks.feedback import BatchReward, Feedback
from hir.trainers.epochs import train_epochs
from hir.trainers.optimization import build_accelerator
from hir.trainers.run_config import RunConfig


@dataclass(frozen=True)
class TrainItem:
    """One supervised example: (instruction, query) -> output."""

    example: Example
    instruction: str
    output: str
    # The item's share of the cross-entropy (balance_instructions, balance_answers; 1 otherwise).
    weight: float = 1.0
    # The answer the feedback checked (extracted from the output); None: the output itself.
    answer: str | None = None
    # HIR's pairwise contrast: the instruction this output is told apart from (None elsewhere).
    opposite: str | None = None


def item_weights(batch: Sequence[TrainItem], device) -> torch.Tensor | None:
    """The batch's CE weights as a tensor, or None when every item counts once."""
    if all(item.weight == 1.0 for item in batch):
        return None
    return torch.tensor([item.weight for item in batch], device=device)


# Settings a resumed run may change: they do not alter what the run computes.
RESUMABLE_CHANGES = frozenset({
    "iterations", "resume", "overwrite_output_dir", "output_dir", "report_to", "log_samples",
    "keep_checkpoints", "eval_batch_size", "sampling_batch_size", "device", "activation_cache_mb",
})  # fmt: skip


class OnlineTrainer:
    """The loop; a method declares what the loop reads of it (below) and fills in the hooks."""

    method: str = ""
    config_class: type[RunConfig] = RunConfig
    # Whether the method samples each iteration (its config is then a `SamplingConfig`, whose
    # buffer_retention and reward_model the loop reads); SFT learns from the labels only.
    samples: bool = True
    # Whether a query's identical samples are all kept (GRPO's groups), or one of each.
    keeps_duplicate_samples: bool = False

    def __init__(
        self,
        model: str | Policy | PreTrainedModel,
        task: str | Task,
        config: RunConfig | None = None,
        *,
        tokenizer=None,
        reward: BatchReward | None = None,
    ) -> None:
        """`model`: a Hub id or folder, a `Policy`, or a loaded `PreTrainedModel` (then pass
        its `tokenizer`). `task`: a `Task` or a task name for `load_task`. `config`: this
        method's config (default: its defaults). `reward`: a function of the feedback contract
        (`hir.tasks.feedback`, e.g. `reward_feedback` of a reward model) whose scores, unbounded,
        drive training instead of the task's feedback (default: `config.reward_model`'s)."""
        config = self.config_class() if config is None else config
        if not isinstance(config, self.config_class):
            raise HIRError(
                f"{type(self).__name__} takes a {self.config_class.__name__}, got "
                f"{type(config).__name__}"
            )
        self.config = config
        self.output_dir = Path(config.output_dir)
        self.files = RunFolder(self.output_dir)
        # Before any model loads: a folder of anything but a run is refused.
        check_folder(self.output_dir, "run")
        self._refuse_mixing_runs()
        set_seed(config.seed)
        self.task = task if isinstance(task, Task) else load_task(task)
        self.model_source = describe_model(model)
        self.accelerator = build_accelerator(
            config.device, config.mixed_precision, config.gradient_accumulation_steps,
            log_with=parse_report_to(config.report_to), project_dir=str(self.output_dir),
        )  # fmt: skip
        self.policy = as_policy(model, tokenizer, device=str(self.accelerator.device))
        # peft drew the adapter's initial weights before the seed was known: draw them anew.
        initialize_adapter(self.policy.model)
        self.policy.format.prompt_limit(config.max_new_tokens)  # fail now, not after iteration 0
        self.reward = self._reward(reward)
        # Answer extraction, format hint and prompt template as this model's format needs.
        self.task = self.task.for_format(self.policy.chat)
        self.train_examples = self.task.split("train")
        if not self.train_examples:
            raise HIRError(f"task {self.task.name} has no training examples")
        if not self.task.split(config.eval_split):
            raise HIRError(
                f"task {self.task.name} has no {config.eval_split} examples to evaluate on: "
                "set --validation_fraction (e.g. 0.2) or choose another --eval_split"
            )
        self.examples_by_id = {e.id: e for e in self.train_examples}
        # The feedback once on a label now: a function that raises, ends the process or returns
        # no number fails here, before anything is written.
        self.task.score(self.train_examples[0].target, self.train_examples[0])
        # Every process holds the whole buffer (to build the same batches); one writes it.
        retention = config.buffer_retention if self.samples else "all"
        self.buffer = ReplayBuffer(self.files.buffer, retention,
                                   len(self.train_examples), persist=self.accelerator.is_main_process)  # fmt: skip
        if self.accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
            self._prepare_for_sharding()
        if self.accelerator.is_fsdp2:
            share_tied_embeddings(self.policy.model)
        self.before_prepare()
        optimizer = torch.optim.AdamW(
            # Only what is trained: an adapter's weights, or the unfrozen layers.
            [p for p in self.policy.model.parameters() if p.requires_grad],
            lr=config.learning_rate,
            weight_decay=config.weight_decay,
        )
        scheduler = get_scheduler(
            config.lr_scheduler, optimizer, num_warmup_steps=config.warmup_steps
        )
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(
            self.policy.model, optimizer, scheduler
        )
        self.generator = torch.Generator().manual_seed(config.seed)
        self.rng = random.Random(config.seed)
        self.history: list[dict] = []
        self.elapsed_before = 0.0

    def _reward(self, reward: BatchReward | None) -> Feedback | None:
        """The training reward, if not the task's feedback: `reward`, or the reward model
        `config.reward_model` names (whole on every process: it only scores)."""
        folder = self.config.reward_model if self.samples else None
        if reward is not None and not self.samples:
            raise HIRError(f"{self.method} samples nothing: a reward has nothing to score; "
                           "give it to HIR, FARL or PPO")  # fmt: skip
        if reward is None and folder:
            from hir.models.reward_model import load_reward_model, reward_feedback

            model = load_reward_model(folder, device=str(self.accelerator.device))
            reward = reward_feedback(model, self.task)
        if reward is None:
            return None
        return Feedback(reward, bounded=False, what="reward function")

    @classmethod
    def check_reward_settings(cls, config: RunConfig) -> None:
        """Refuse settings that cannot learn from a reward's unbounded scores (no correct/wrong
        threshold). Called by the trainer given a reward, and by the InstructGPT pipeline before
        its first stage, so a wrong final config fails before two stages of training."""

    @property
    def target_instruction(self) -> str:
        """The instruction sampled and evaluated under."""
        return self.evaluation_instruction(self.config, self.task)

    @classmethod
    def evaluation_instruction(cls, config: RunConfig, task: Task) -> str:
        """The instruction a run of this method with `config` samples and evaluates under,
        known before the run is built (`hir compare` evaluates its start row under it)."""
        return config.correct_instruction or task.correct_instruction

    def is_success(self, score: float) -> bool:
        return score >= self.config.success_threshold

    # -- the hooks a method fills in -----------------------------------------------------------

    def training_items(self, iteration: int) -> Sequence[Any]:
        raise NotImplementedError

    def update(self, items: Sequence[Any], iteration: int) -> dict:
        raise NotImplementedError

    def feedback_share(self) -> float:
        """The share of samples the feedback scores (HIR under a feedback budget learns the
        rest's labels; default: every sample is scored)."""
        return 1.0

    def before_prepare(self) -> None:
        """Build what the method needs from the starting policy before accelerate wraps or
        shards it (PPO: its reference and value model; default: nothing)."""

    def extra_state(self) -> dict[str, Any]:
        """Method-specific state for a checkpoint, as {file name: what to `torch.save` there}
        (default: none). Called on every process of a sharded run (gathering is collective),
        on the main process only otherwise."""
        return {}

    def load_extra_state(self, folder: Path) -> None:
        """Read what `extra_state` gave into a checkpoint folder."""

    # -- the loop ------------------------------------------------------------------------------

    def train(self) -> dict:
        """Run (or, with `resume`, continue) every iteration; returns the summary. The main
        process holds the run folder's lock (`hir.runs.lock`) while it writes."""
        main = self.accelerator.is_main_process
        with folder_lock(self.output_dir) if main else contextlib.nullcontext():
            return self._train()

    def _train(self) -> dict:
        if self.accelerator.is_main_process:  # (its owner checked before the model loaded)
            mark_folder(self.output_dir, "run", f"hir train --method {self.method}")
            remove_stale_temporary_files(self.output_dir)  # left by a write killed mid-way
        # The run's identity, named in every checkpoint's manifest: a resume continues it.
        self.run_id = self.files.run_id() if self.config.resume else None
        self.run_id = self.run_id or uuid.uuid4().hex
        if self.config.resume:
            self._resume_from_latest()
        elif self.config.overwrite_output_dir and self.accelerator.is_main_process:
            remove_run_files(self.output_dir)
        self.accelerator.wait_for_everyone()
        self.logger = RunLogger(self.accelerator, self.output_dir, self._run_record(), self.history,
                                run_id=self.run_id)  # fmt: skip
        start = time.perf_counter() - self.elapsed_before
        if not self.history:
            self._finish_iteration(0, {}, start)
        for iteration in range(len(self.history), self.config.iterations + 1):
            metrics = self.sample(iteration) if self.samples else {}
            metrics.update(self.update(self.training_items(iteration), iteration))
            self._finish_iteration(iteration, metrics, start)
        return self._write_summary(time.perf_counter() - start)

    def draw_train_examples(self, count: int | None) -> list:
        """All training examples, or a draw of `count` of them from the trainer's seeded
        generator (checkpointed, so a resumed run draws the same ones)."""
        if count and count < len(self.train_examples):
            return self.rng.sample(self.train_examples, count)
        return self.train_examples

    def sample(self, iteration: int) -> dict:
        """Sample every (or a random subset of the) training queries under the target
        instruction, score the outputs and add them to the buffer."""
        config = self.config
        queries = self.draw_train_examples(config.max_queries_per_iteration)
        started = time.perf_counter()
        # With several processes each samples a share of the queries; all get every sample.
        with full_weights(self.model):
            samples = on_shares(
                self.accelerator,
                queries,
                lambda mine: sample_outputs(
                    self.policy, self.task, mine, instruction=self.target_instruction,
                    iteration=iteration, num_samples=config.num_samples,
                    temperature=config.temperature, top_k=config.top_k, top_p=config.top_p,
                    max_new_tokens=config.max_new_tokens, batch_size=config.sampling_batch_size,
                    progress=f"iteration {iteration}: sampling", reward=self.reward,
                    feedback_share=self.feedback_share(), seed=config.seed,
                    keep_duplicates=self.keeps_duplicate_samples,
                ),
            )  # fmt: skip
        seconds = time.perf_counter() - started
        crash_point("sampling")
        self.buffer.add(samples)
        # Over the scored samples (all but those a feedback budget leaves unscored).
        scored = [s for s in samples if s.score is not None]
        scores = [s.feedback_score for s in scored]
        extra = {} if self.reward is None else {
            "sample_reward": sum(s.score for s in scored) / max(len(scored), 1)}  # fmt: skip
        if len(scored) < len(samples):
            extra["scored_share"] = len(scored) / len(samples)
        return {
            "sample_accuracy": sum(map(self.is_success, scores)) / max(len(scores), 1),
            "sample_mean_score": sum(scores) / max(len(scores), 1),
            **extra,
            "sample_well_formed": sum(
                self.task.is_well_formed(s.output if s.answer is None else s.answer)
                for s in samples
            )
            / len(samples),
            "unique_samples_per_query": len({(s.query_id, s.output) for s in samples})
            / len(queries),
            "buffer_size": len(self.buffer),
            "sampling_seconds": seconds,
            "samples_per_second": len(queries) * config.num_samples / max(seconds, 1e-9),
            "examples": [s.to_dict() for s in samples[: config.log_samples]],
        }

    # -- evaluation, logging, checkpoints ------------------------------------------------------

    def _finish_iteration(self, iteration: int, metrics: dict, start: float) -> None:
        record = {"iteration": iteration}
        if is_evaluated(iteration, self.config.iterations, self.config.eval_every):
            with full_weights(self.model):
                result = evaluate_with_config(
                    self.policy, self.task, self.config, self.target_instruction, self.accelerator
                )
            record.update(result.metrics())
        record.update(**metrics, wall_seconds=time.perf_counter() - start)
        self.history.append(record)
        self.logger.log(record)
        crash_point("logging")
        # A sharded model's weights and optimizer state are gathered whole (every process takes
        # part) and written by the main process, like every other file.
        # (The prepared model: ZeRO-3's engine holds the weights' master copy.)
        sharded = is_sharded(self.model)
        if sharded or self.accelerator.is_main_process:
            weights = full_state_dict(self.model) if sharded else None
            optimizer_state = full_optimizer_state(self.model, self.optimizer.optimizer)
            extra = self.extra_state()
        if self.accelerator.is_main_process:
            save_checkpoint(self.files.checkpoints, iteration,
                            lambda folder: self._write_checkpoint(folder, weights, optimizer_state, extra),
                            self.config.keep_checkpoints, run_id=self.run_id)  # fmt: skip
        self.accelerator.wait_for_everyone()

    def _write_checkpoint(
        self, folder: Path, weights: dict | None, optimizer_state: dict, extra: dict[str, Any]
    ) -> None:
        """`weights`: the model's whole state dict where it is sharded (None: its own)."""
        self.accelerator.unwrap_model(self.model).save_pretrained(folder, state_dict=weights)
        self.policy.tokenizer.save_pretrained(folder)
        save_training_state(
            folder, optimizer_state, self.scheduler, capture_rng(self.generator, self.rng)
        )
        self.buffer.save(folder / BUFFER)
        atomic_write_jsonl(folder / HISTORY, self.history)
        for name, state in extra.items():
            torch.save(state, folder / name)

    def _prepare_for_sharding(self) -> None:
        """Before the model is sharded (FSDP2, DeepSpeed ZeRO-3): what hir cannot run sharded,
        refused in one line, and the settings accelerate needs from hir."""
        accelerator = self.accelerator
        engine = "FSDP2" if accelerator.is_fsdp2 else "ZeRO-3"
        if accelerator.distributed_type == DistributedType.DEEPSPEED:
            ds_config = accelerator.state.deepspeed_plugin.deepspeed_config
            stage = ds_config.get("zero_optimization", {}).get("stage")
            if stage != 3:
                raise HIRError(
                    f"DeepSpeed ZeRO stage {stage} is not supported (its optimizer state is "
                    "partitioned but its weights are not): set zero_stage: 3 "
                    "(configs/accelerate/zero3.yaml), or launch data parallel"
                )
            # accelerate needs a micro-batch size from a dataloader or the config; hir has no
            # dataloader: each process takes its share of a batch.
            if ds_config.get("train_micro_batch_size_per_gpu") in (None, "auto"):
                share = max(1, self.config.batch_size // accelerator.num_processes)
                ds_config["train_micro_batch_size_per_gpu"] = share
        elif not accelerator.is_fsdp2:
            raise HIRError(
                "FSDP version 1 is not supported: set fsdp_version: 2 in the accelerate config "
                "(configs/accelerate/fsdp2.yaml)"
            )
        cache = self.policy.frozen_cache
        if cache is not None and cache.enabled:
            raise HIRError(
                f"--train_last_layers with the frozen-layer activation cache cannot run under "
                f"{engine}: the cache runs the frozen layers outside the sharded forward pass; "
                "add --activation_cache_mb 0 (the lower layers stay frozen, without the cache)"
            )

    def _refuse_mixing_runs(self) -> None:
        config = self.config
        fresh = not config.resume and not config.overwrite_output_dir
        if fresh and list_checkpoints(self.files.checkpoints):
            raise HIRError(
                f"{self.output_dir} already holds the checkpoints of a run: pass --resume to "
                "continue it, --overwrite_output_dir to start over, or choose another --output_dir"
            )

    def _resume_from_latest(self) -> None:
        """Resume from the newest checkpoint that verifies; say which were skipped and why."""
        checkpoints = list_checkpoints(self.files.checkpoints)
        if not checkpoints:
            print(f"hir: no checkpoint in {self.files.checkpoints}; starting from the beginning")
            return
        self._refuse_changed_settings()
        for folder in reversed(checkpoints):
            problem = checkpoint_problem(folder, self.run_id)
            if problem is None:
                try:
                    self.restore(folder)
                    return
                except (OSError, ValueError, RuntimeError, KeyError, HIRError) as exc:
                    problem = f"it cannot be loaded ({type(exc).__name__}: {str(exc)[:100]})"
            print(f"hir: skipping checkpoint {folder.name}: {problem}", file=sys.stderr)
        raise HIRError(
            f"no intact checkpoint in {self.files.checkpoints} (all failed their checks, "
            "see above); start over with --overwrite_output_dir"
        )

    def _refuse_changed_settings(self) -> None:
        """A resume continues the same run: the settings that define it must not change."""
        path = self.files.config
        if not path.is_file():
            return
        saved = json.loads(path.read_text(encoding="utf-8")).get("config", {})
        current = json.loads(json.dumps(self._run_record(), default=str))
        changed = [k for k, v in current.items()
                   if k not in RESUMABLE_CHANGES and k in saved and saved[k] != v]  # fmt: skip
        if changed:
            name = changed[0]
            raise HIRError(
                f"--resume with a different {name} ({saved[name]!r} in {path}, now "
                f"{current[name]!r}): a resume must continue the same run; change it back, or "
                "start a new run in another --output_dir"
            )

    def restore(self, folder: str | Path) -> None:
        """Continue from a checkpoint: the policy's weights, optimizer and scheduler, every RNG
        state, the buffer, the history and the method's extra state. Called after construction,
        so that the run's own start (e.g. PPO's reference policy) is what the constructor built."""
        folder = Path(folder)
        self.policy.load_weights(folder)
        state = load_training_state(folder)
        load_optimizer_state(self.model, self.optimizer.optimizer, state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.load_extra_state(folder)
        restore_rng(state["rng"], self.generator, self.rng)
        self.buffer.load(folder / BUFFER)
        self.buffer.save()
        self.history = list(read_jsonl(folder / HISTORY))
        self.elapsed_before = self.history[-1]["wall_seconds"]
        print(f"hir: resumed from {folder} (iteration {self.history[-1]['iteration']})")

    def _run_record(self) -> dict:
        scope = self.policy.training_scope
        trained = "all weights" if scope.is_full else dataclasses.asdict(scope)
        cache = self.policy.frozen_cache
        if isinstance(trained, dict):  # a speed setting, recorded apart: a resume may change it
            trained.pop("activation_cache_mb")
        extraction = self.task.extraction
        return {"method": self.method, "model": self.model_source, "task": self.task.name,
                "prompt_format": "chat" if self.policy.chat else "plain", "training_scope": trained,
                "activation_cache_mb": cache.max_bytes // 2**20 if cache and cache.enabled else 0,
                "answer_extraction": callable_name(extraction) if callable(extraction) else extraction,
                "reward": self.reward.name if self.reward else None, **self.task.data_identity(),
                **self.config.to_dict()}  # fmt: skip

    def _write_summary(self, wall_seconds: float) -> dict:
        evaluated = evaluated_records(self.history)
        best = max(evaluated, key=lambda r: r["accuracy"])
        summary = {
            "method": self.method,
            "task": self.task.name,
            "model": self.model_source,
            "seed": self.config.seed,
            "initial_accuracy": evaluated[0]["accuracy"],
            "final_accuracy": evaluated[-1]["accuracy"],
            "final_mean_score": evaluated[-1]["mean_score"],
            "best_accuracy": best["accuracy"],
            "best_iteration": best["iteration"],
            "iterations": self.history[-1]["iteration"],
            "eval_split": self.config.eval_split,
            "wall_seconds": round(wall_seconds, 2),
            # None for an iteration that was not evaluated (eval_every > 1).
            "accuracy_per_iteration": [r.get("accuracy") for r in self.history],
            "config": self._run_record(),
            "versions": library_versions(),
        }
        if self.accelerator.is_main_process:
            atomic_write_json(self.files.summary, summary)
            plot_accuracy(self.history, self.files.accuracy_plot,
                          title=f"{self.method} on {self.task.name}")  # fmt: skip
        self.logger.close()
        return summary


class SupervisedTrainer(OnlineTrainer):
    """The update of the methods that train `epochs_per_iteration` epochs of a supervised loss
    on their training items (FARL, SFT; HIR on the same pieces). `loss(batch)` is
    label-smoothed CE of each item's output after its (instruction, query) prompt; HIR's adds
    its two terms."""

    def training_pairs(self, items: Sequence[TrainItem]) -> tuple[list[str], list[str]]:
        """The (prompt, output) pairs the loss reads for `items`."""
        return [self.task.prompt(i.example.query, i.instruction) for i in items], [i.output for i in items]  # fmt: skip

    def loss(self, batch: list[TrainItem]) -> tuple[torch.Tensor, dict[str, float]]:
        prompts = [self.task.prompt(item.example.query, item.instruction) for item in batch]
        statistics = self.policy.statistics_for(prompts, [i.output for i in batch], self.model)
        weights = item_weights(batch, statistics.mask.device)
        loss = label_smoothed_nll(statistics, self.config.label_smoothing, weights)
        return loss, {"loss": loss.item(), "loss_sft": loss.item()}

    def weighted(self, items: Sequence[TrainItem]) -> list[TrainItem]:
        """`items` with the CE weights their options give: the one place weights are set.
        `balance_answers`: within each instruction, each answer's items weigh the same."""
        if not self.config.balance_answers:
            return list(items)
        answers = [i.output if i.answer is None else i.answer for i in items]
        weights = answer_balanced_weights([i.instruction for i in items], answers)
        return [dataclasses.replace(i, weight=i.weight * w) for i, w in zip(items, weights)]

    def update(self, items: Sequence[TrainItem], iteration: int) -> dict:
        if not items:
            return {"train_steps": 0, "train_items": 0}
        items = self.weighted(items)
        self.policy.precompute_frozen_layers(*self.training_pairs(items))
        metrics = self.train_epochs(items, self.loss, self.config.epochs_per_iteration, iteration)
        return {**metrics, "train_items": len(items)}

    def train_epochs(self, items: Sequence[TrainItem], loss, epochs: int, iteration: int) -> dict:
        """`epochs` passes of `loss` over `items`, with the run's batching and shuffling."""
        return train_epochs(
            self.accelerator, self.model, self.optimizer, self.scheduler, items, loss,
            epochs=epochs, batch_size=self.config.batch_size,
            generator=self.generator, max_grad_norm=self.config.max_grad_norm,
            progress=f"iteration {iteration}: training",
            group_of=(lambda item: item.example.id) if self.config.group_by_query else None,
        )  # fmt: skip


def is_evaluated(iteration: int, iterations: int, eval_every: int) -> bool:
    """Whether iteration `iteration` of `iterations` is evaluated: the start, every
    `eval_every`-th, and the last, so that every run has an initial and a final accuracy."""
    return iteration == 0 or iteration == iterations or iteration % eval_every == 0
