"""HIRTrainer: the outer loop of Hindsight Instruction Relabeling (METHOD.md section 2).

iteration 0:  evaluate the starting policy
iteration i:  sample -> score -> buffer -> relabel -> train E epochs -> evaluate -> checkpoint

trainer = HIRTrainer(model="path/or/hub-id", task=load_task("synthetic/count"), config=HIRConfig())
summary = trainer.train()
"""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from transformers import get_scheduler

from hir.buffer import ReplayBuffer
from hir.checkpoint import (
    capture_rng,
    latest_checkpoint,
    list_checkpoints,
    load_training_state,
    restore_rng,
    save_checkpoint,
    save_training_state,
)
from hir.errors import HIRError
from hir.evaluate import evaluate
from hir.fileio import atomic_write_json, atomic_write_jsonl, read_jsonl
from hir.losses import (
    IGNORE_INDEX,
    in_batch_contrastive_loss,
    label_smoothed_nll,
    mean_entropy,
    pairwise_contrastive_loss,
    sequence_scores,
)
from hir.models import Policy, load_policy
from hir.parallel import on_shares
from hir.relabel import BinaryRelabel, CallableRelabel, QuantileRelabel
from hir.report import plot_accuracy
from hir.runinfo import library_versions
from hir.sampling import Sample, sample_outputs
from hir.tasks import Example, Task, load_task
from hir.tasks.user_data import load_callable
from hir.tracking import RunLogger, parse_report_to
from hir.trainers.hir_config import HIRConfig
from hir.trainers.loop import train_epochs

IN_BATCH_GROUP = 8  # the in-batch form scores every output under every context: group^2 sequences


@dataclass(frozen=True)
class TrainItem:
    """One relabeled sample: (instruction*, query) -> output."""

    example: Example
    instruction: str
    output: str


class HIRTrainer:
    method = "hir"

    def __init__(
        self,
        model: str | Policy,
        task: str | Task,
        config: HIRConfig,
        relabeler=None,
    ) -> None:
        self.config = config
        self.output_dir = Path(config.output_dir)
        set_seed(config.seed)
        self.task = task if isinstance(task, Task) else load_task_from_config(task, config)
        self.accelerator = Accelerator(
            cpu=config.device == "cpu",
            mixed_precision=resolve_mixed_precision(config.mixed_precision),
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            log_with=parse_report_to(config.report_to) or None,
            project_dir=str(self.output_dir),
        )
        checkpoints = self.output_dir / "checkpoints"
        if not config.resume and list_checkpoints(checkpoints):
            if not config.overwrite_output_dir:
                raise HIRError(
                    f"{self.output_dir} already holds the checkpoints of a run: pass --resume to continue "
                    "it, --overwrite_output_dir to start over, or choose another --output_dir"
                )
            if self.accelerator.is_main_process:
                shutil.rmtree(checkpoints)
            self.accelerator.wait_for_everyone()
        resume_from = latest_checkpoint(checkpoints) if config.resume else None
        if config.resume and resume_from is None:
            print(
                f"hir: no checkpoint in {self.output_dir / 'checkpoints'}; starting from the beginning"
            )
        if resume_from is not None or not isinstance(model, Policy):
            source = resume_from or model
            if not source:
                raise HIRError("no model given: set --model to a Hub id or a local folder")
            model = load_policy(source, device=str(self.accelerator.device))
        self.policy = model
        self.relabeler = relabeler or make_relabeler(config, self.task)
        self.train_examples = self.task.split("train")
        if not self.train_examples:
            raise HIRError(f"task {self.task.name} has no training examples")
        self.examples_by_id = {e.id: e for e in self.train_examples}
        # Every process holds the whole buffer (to build the same batches); one writes it.
        self.buffer = ReplayBuffer(
            self.output_dir / "buffer.jsonl",
            config.buffer_retention,
            len(self.train_examples),
            persist=self.accelerator.is_main_process,
        )

        optimizer = torch.optim.AdamW(
            self.policy.model.parameters(),
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
        if resume_from is not None:
            self._restore(resume_from)
        self.logger = RunLogger(self.accelerator, self.output_dir, config.to_dict(), self.history)

    # -- the loop -----------------------------------------------------------------------------

    def train(self) -> dict:
        start = time.perf_counter() - self.elapsed_before
        first = len(self.history)
        if first == 0:
            self._finish_iteration(0, {}, start)
        for iteration in range(max(first, 1), self.config.iterations + 1):
            metrics = self._sample(iteration)
            metrics.update(self._train_on_buffer(iteration))
            self._finish_iteration(iteration, metrics, start)
        return self._write_summary(time.perf_counter() - start)

    def _sample(self, iteration: int) -> dict:
        config = self.config
        queries = self.train_examples
        if config.max_queries_per_iteration and config.max_queries_per_iteration < len(queries):
            queries = self.rng.sample(queries, config.max_queries_per_iteration)
        started = time.perf_counter()
        # With several processes each samples a share of the queries; all get every sample.
        samples = on_shares(
            self.accelerator,
            queries,
            lambda mine: sample_outputs(
                self.policy,
                self.task,
                mine,
                instruction=self.relabeler.target_instruction,
                iteration=iteration,
                num_samples=config.num_samples,
                temperature=config.temperature,
                top_k=config.top_k,
                top_p=config.top_p,
                max_new_tokens=config.max_new_tokens,
                batch_size=config.sampling_batch_size,
                progress=f"iteration {iteration}: sampling",
            ),
        )
        seconds = time.perf_counter() - started
        self.buffer.add(samples)
        scores = [s.score for s in samples]
        return {
            "sample_accuracy": sum(s == 1.0 for s in scores) / len(scores),
            "sample_mean_score": sum(scores) / len(scores),
            "sample_well_formed": sum(self.task.is_well_formed(s.output) for s in samples)
            / len(samples),
            "unique_samples_per_query": len(samples) / len(queries),
            "buffer_size": len(self.buffer),
            "sampling_seconds": seconds,
            "samples_per_second": len(queries) * config.num_samples / max(seconds, 1e-9),
            "examples": [s.to_dict() for s in samples[: config.log_samples]],
        }

    def _train_on_buffer(self, iteration: int) -> dict:
        return self._train_on(self.relabel(self.buffer.samples), iteration)

    def _train_on(self, items: list[TrainItem], iteration: int) -> dict:
        if not items:
            return {"train_steps": 0, "train_items": 0}
        target = self.relabeler.target_instruction
        target_share = sum(i.instruction == target for i in items) / len(items)
        metrics = train_epochs(
            self.accelerator,
            self.model,
            self.optimizer,
            self.scheduler,
            items,
            self.loss,
            epochs=self.config.epochs_per_iteration,
            batch_size=self.config.batch_size,
            generator=self.generator,
            max_grad_norm=self.config.max_grad_norm,
            progress=f"iteration {iteration}: training",
            group_of=(lambda item: item.example.id) if self.config.group_by_query else None,
        )
        return {**metrics, "train_items": len(items), "relabeled_target_share": target_share}

    def relabel(self, samples: Sequence[Sample]) -> list[TrainItem]:
        """Every buffered sample, with the instruction it satisfies in hindsight."""
        self.relabeler.fit([s.score for s in samples])
        items = []
        for s in samples:
            example = self.examples_by_id[s.query_id]
            items.append(
                TrainItem(
                    example,
                    self.relabeler(s.instruction, example.query, s.output, s.score),
                    s.output,
                )
            )
        return items

    # -- the loss -----------------------------------------------------------------------------

    def loss(self, batch: list[TrainItem]) -> tuple[torch.Tensor, dict[str, float]]:
        config = self.config
        contexts, outputs = zip(*(self._with_sub_output(item) for item in batch))
        prompts = [
            self.task.prompt(i.example.query, i.instruction) + c for i, c in zip(batch, contexts)
        ]
        if config.contrastive_weight and config.contrastive_form == "pairwise":
            opposite = [
                self.task.prompt(i.example.query, self.relabeler.opposite(i.instruction)) + c
                for i, c in zip(batch, contexts)
            ]
            # Both instructions in one forward pass.
            logits, labels = self.policy.logits_for(
                prompts + opposite, list(outputs) * 2, self.model
            )
            n = len(batch)
            scores = sequence_scores(logits, labels)
            contrastive = pairwise_contrastive_loss(
                scores[:n], scores[n:], config.contrastive_smoothing
            )
            logits, labels = logits[:n], labels[:n]
        elif config.contrastive_weight:
            logits, labels, contrastive = self._in_batch(prompts, list(outputs))
        else:
            logits, labels = self.policy.logits_for(prompts, list(outputs), self.model)
            contrastive = torch.zeros((), device=logits.device)
        sft = label_smoothed_nll(logits, labels, config.label_smoothing)
        entropy = mean_entropy(logits, labels)
        loss = sft + config.contrastive_weight * contrastive - config.entropy_weight * entropy
        terms = {
            "loss": loss.item(),
            "loss_sft": sft.item(),
            "loss_contrastive": contrastive.item(),
            "entropy": entropy.item(),
        }
        return loss, terms

    def _in_batch(self, prompts: list[str], outputs: list[str]):
        """The paper's in-batch form over groups of IN_BATCH_GROUP: P[i, k] = log P(o_i | context_k)."""
        losses, diagonal_logits, diagonal_labels = [], [], []
        for begin in range(0, len(prompts), IN_BATCH_GROUP):
            group_prompts, group_outputs = (
                prompts[begin : begin + IN_BATCH_GROUP],
                outputs[begin : begin + IN_BATCH_GROUP],
            )
            m = len(group_prompts)
            logits, labels = self.policy.logits_for(
                [group_prompts[k] for _ in range(m) for k in range(m)],
                [group_outputs[i] for i in range(m) for _ in range(m)],
                self.model,
            )
            losses.append(in_batch_contrastive_loss(sequence_scores(logits, labels).view(m, m)))
            diagonal = [i * m + i for i in range(m)]
            diagonal_logits.append(logits[diagonal])
            diagonal_labels.append(labels[diagonal])
        width = max(x.shape[1] for x in diagonal_logits)
        logits = torch.cat(
            [torch.nn.functional.pad(x, (0, 0, 0, width - x.shape[1])) for x in diagonal_logits]
        )
        labels = torch.cat(
            [
                torch.nn.functional.pad(x, (0, width - x.shape[1]), value=IGNORE_INDEX)
                for x in diagonal_labels
            ]
        )
        return logits, labels, torch.stack(losses).mean()

    def _with_sub_output(self, item: TrainItem) -> tuple[str, str]:
        """(extra context, output to predict). With probability sub_output_prob a multi-word
        output is cut at a random word: the prefix joins the context, the rest is predicted
        under the same relabeled instruction (the whole output satisfies it)."""
        words = item.output.split(" ")
        if len(words) > 1 and self.rng.random() < self.config.sub_output_prob:
            cut = self.rng.randrange(1, len(words))
            return " " + " ".join(words[:cut]), " ".join(words[cut:])
        return "", item.output

    # -- evaluation, logging, checkpoints ---------------------------------------------------

    def _finish_iteration(self, iteration: int, metrics: dict, start: float) -> None:
        config = self.config
        result = evaluate(
            self.policy,
            self.task,
            split=config.eval_split,
            instruction=self.relabeler.target_instruction,
            batch_size=config.eval_batch_size,
            max_new_tokens=config.max_new_tokens,
            limit=config.eval_limit,
            accelerator=self.accelerator,
        )
        record = {
            "iteration": iteration,
            "accuracy": result.accuracy,
            "mean_score": result.mean_score,
            "well_formed": sum(self.task.is_well_formed(r["prediction"]) for r in result.records)
            / max(result.num_examples, 1),
            **metrics,
            "wall_seconds": time.perf_counter() - start,
        }
        self.history.append(record)
        self.logger.log(record)
        if self.accelerator.is_main_process:
            save_checkpoint(
                self.output_dir / "checkpoints",
                iteration,
                self._write_checkpoint,
                config.keep_checkpoints,
            )
        self.accelerator.wait_for_everyone()

    def _write_checkpoint(self, folder: Path) -> None:
        self.accelerator.unwrap_model(self.model).save_pretrained(folder)
        self.policy.tokenizer.save_pretrained(folder)
        save_training_state(
            folder, self.optimizer, self.scheduler, capture_rng(self.generator, self.rng)
        )
        self.buffer.save(folder / "buffer.jsonl")
        atomic_write_jsonl(folder / "history.jsonl", self.history)

    def _restore(self, folder: Path) -> None:
        state = load_training_state(folder)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        restore_rng(state["rng"], self.generator, self.rng)
        self.buffer.load(folder / "buffer.jsonl")
        self.buffer.save()
        self.history = list(read_jsonl(folder / "history.jsonl"))
        self.elapsed_before = self.history[-1]["wall_seconds"]
        print(f"hir: resumed from {folder} (iteration {self.history[-1]['iteration']})")

    def _write_summary(self, wall_seconds: float) -> dict:
        best = max(self.history, key=lambda r: r["accuracy"])
        summary = {
            "method": self.method,
            "task": self.task.name,
            "model": self.config.model,
            "seed": self.config.seed,
            "initial_accuracy": self.history[0]["accuracy"],
            "final_accuracy": self.history[-1]["accuracy"],
            "best_accuracy": best["accuracy"],
            "best_iteration": best["iteration"],
            "iterations": self.history[-1]["iteration"],
            "eval_split": self.config.eval_split,
            "wall_seconds": round(wall_seconds, 2),
            "accuracy_per_iteration": [r["accuracy"] for r in self.history],
            "config": self.config.to_dict(),
            "versions": library_versions(),
        }
        if self.accelerator.is_main_process:
            atomic_write_json(self.output_dir / "summary.json", summary)
            plot_accuracy(
                self.history,
                self.output_dir / "accuracy.png",
                title=f"{self.method} on {self.task.name}",
            )
        self.logger.close()
        return summary


def make_relabeler(config: HIRConfig, task: Task):
    correct = config.correct_instruction or task.correct_instruction
    wrong = config.wrong_instruction or task.wrong_instruction
    if config.relabel == "binary":
        return BinaryRelabel(correct, wrong, config.success_threshold)
    if config.relabel == "quantile":
        return QuantileRelabel(config.num_buckets)
    function = load_callable(config.relabel, "relabel")
    return CallableRelabel(function, target_instruction=correct, fallback_opposite=wrong)


def load_task_from_config(spec: str, config) -> Task:
    return load_task(
        spec,
        bigbench_dir=config.bigbench_dir,
        feedback=config.feedback,
        query_field=config.query_field,
        answer_field=config.answer_field,
        num_examples=config.num_examples,
        data_seed=config.data_seed,
        validation_fraction=config.validation_fraction or None,
    )


def resolve_mixed_precision(setting: str) -> str:
    if setting != "auto":
        return setting
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
