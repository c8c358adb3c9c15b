"""A reward model r(prompt, output) -> one number: as a model (`RewardModel`, InstructGPT's stage
2), as a folder on disk, and as feedback for every method (`reward_feedback`).

Two kinds of folder load (`load_reward_model`):

- **hir's**, written by `save_reward_model` (`hir instructgpt`): an ordinary model folder (the
  body, adapters merged, and its tokenizer) plus `reward_head.safetensors` (the scalar head) and
  `reward_model.json` (the prompt format and instruction its training prompts were written in).
- **any transformers sequence-classification model with one output** (a reward model from the
  Hub): its input is the prompt and the output, through its tokenizer's chat template if it has
  one, else the two texts joined.

A reward model scores what it was trained to read: `reward_feedback` rebuilds each prompt from
the example's query in the reward model's own prompt format and instruction, whatever the policy
being trained reads (a relabeled instruction, another chat template).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from hir.errors import HIRError
from hir.models.loading import TOKENIZER_FILES, load_policy
from hir.models.policy import Policy
from hir.models.scalar_head import ScalarHeadModel, last_output_scalars
from hir.models.speed.sharding import full_state_dict, is_main_process, is_sharded
from hir.runs.fileio import atomic_write_json
from hir.runs.staging import staged_folder
from hir.tasks.base import Task

REWARD_HEAD = "reward_head.safetensors"
REWARD_CARD = "reward_model.json"


@dataclass(frozen=True)
class RewardCard:
    """How a hir reward model reads its input: the prompt format and instruction of the prompts
    it was trained on (`Task.for_format(chat).prompt(query, instruction)`)."""

    prompt_format: str  # "chat" | "plain"
    instruction: str
    task: str = ""
    training: dict | None = None  # the training's final metrics


class RewardModel(ScalarHeadModel):
    """r(prompt, output): the scalar head read at the output's last token, on the policy's
    network (a copy of it, or, with `copy_body=False`, the loaded network itself)."""

    def __init__(self, policy: Policy, copy_body: bool = True, card: RewardCard | None = None):
        super().__init__(policy, copy_body=copy_body)
        self.card = card

    def reward(self, prompts: Sequence[str], outputs: Sequence[str]) -> torch.Tensor:
        batch = self.policy.encode(list(prompts), list(outputs)).to(self.head.weight.device)
        return last_output_scalars(*self(batch))

    @torch.no_grad()
    def score(
        self, prompts: Sequence[str], outputs: Sequence[str], batch_size: int = 64
    ) -> torch.Tensor:
        self.eval()
        return torch.cat([
            self.reward(prompts[i : i + batch_size], outputs[i : i + batch_size])
            for i in range(0, len(prompts), batch_size)
        ]).float().cpu()  # fmt: skip

    def prompts_for(self, task: Task, queries: Sequence[str]) -> list[str]:
        """The prompts this model was trained on, for `queries` of (the unformatted) `task`."""
        if self.card is None:
            raise HIRError("this reward model has no card: save it with save_reward_model first")
        own = task.for_format(self.card.prompt_format == "chat")
        return [own.prompt(query, self.card.instruction) for query in queries]


class SequenceClassifierReward(nn.Module):
    """A transformers sequence-classification model with one output, read on the prompt and
    the output (in its chat template when its tokenizer has one)."""

    def __init__(self, model, tokenizer) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id

    def text(self, prompt: str, output: str) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]  # fmt: skip
            return self.tokenizer.apply_chat_template(messages, tokenize=False)
        return f"{prompt} {output}"

    @torch.no_grad()
    def score(
        self, prompts: Sequence[str], outputs: Sequence[str], batch_size: int = 64
    ) -> torch.Tensor:
        self.model.eval()
        device = next(self.model.parameters()).device
        scores = []
        for begin in range(0, len(prompts), batch_size):
            texts = [self.text(p, o) for p, o in zip(prompts[begin : begin + batch_size],
                                                     outputs[begin : begin + batch_size])]  # fmt: skip
            batch = self.tokenizer(texts, return_tensors="pt", padding=True).to(device)
            scores.append(self.model(**batch).logits[:, 0].float().cpu())
        return torch.cat(scores)

    def prompts_for(self, task: Task, queries: Sequence[str]) -> list[str]:
        plain = task.for_format(False)
        return [plain.prompt(query) for query in queries]


def reward_feedback(model: RewardModel | SequenceClassifierReward, task: Task) -> Callable:
    """`model` as a batch reward function of the feedback contract (`hir.tasks.feedback`), for
    the examples of `task` (unformatted: the reward model's own format is applied): it reads
    each example's query, not the prompt the policy saw."""

    def reward_model(prompts, completions, query, **columns) -> list[float]:
        return model.score(model.prompts_for(task, query), list(completions)).tolist()

    return reward_model


def save_reward_model(
    model: RewardModel, folder: str | os.PathLike, card: RewardCard,
    unsharded: Callable[[], RewardModel] | None = None,
) -> None:  # fmt: skip
    """Write `model` (adapters merged) as a hir reward-model folder, in one rename, from the main
    process (the others return at once). Sharded (FSDP2, ZeRO-3): a collective call; the main
    process gathers the whole weights into `unsharded()` (a fresh model of the same shape)."""
    from hir.models.adapters import merged_model
    from hir.models.speed.sharding import load_state

    sharded = is_sharded(model)
    state = full_state_dict(model) if sharded else None
    if not is_main_process():
        return
    if sharded:
        model = unsharded()
        missing, _ = load_state(model, state)
        if missing:
            raise HIRError(f"the gathered reward model lacks {missing[:3]}: cannot save it")
    with staged_folder(folder, overwrite=True, made_by="hir (reward model)") as staging:
        merged_model(model.body).save_pretrained(staging)
        model.policy.tokenizer.save_pretrained(staging)
        head = {name: tensor.detach().float().cpu().contiguous()
                for name, tensor in model.head.state_dict().items()}  # fmt: skip
        save_file(head, staging / REWARD_HEAD)
        atomic_write_json(staging / REWARD_CARD, asdict(card))


def load_reward_model(
    folder: str | os.PathLike, device: str | None = None
) -> RewardModel | SequenceClassifierReward:
    """A reward model from `folder` (see the module's doc); a folder that is neither kind, or
    whose head does not give one number, is refused in one line."""
    path = Path(folder)
    if not (path / "config.json").is_file():
        raise HIRError(
            f"reward model {str(folder)!r} is not a model folder (no config.json): give a folder "
            "that `hir instructgpt` wrote (its reward_model/), or a sequence-classification model"
        )
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise HIRError(
            f"reward model {str(folder)!r} holds no tokenizer (none of {', '.join(TOKENIZER_FILES)}): "
            "save it next to the model with tokenizer.save_pretrained(folder)"
        )
    if (path / REWARD_CARD).is_file():
        return _load_hir_reward_model(path, device)
    return _load_sequence_classifier(path, device)


def _load_hir_reward_model(path: Path, device: str | None) -> RewardModel:
    card = RewardCard(**json.loads((path / REWARD_CARD).read_text(encoding="utf-8")))
    if not (path / REWARD_HEAD).is_file():
        raise HIRError(f"reward model {str(path)!r} lacks its head, {REWARD_HEAD}: save it again")
    policy = load_policy(path, device=device, prompt_format=card.prompt_format)
    model = RewardModel(policy, copy_body=False, card=card).to(policy.device)
    head = load_file(path / REWARD_HEAD)
    if head.get("weight") is None or tuple(head["weight"].shape) != (1, policy.hidden_size):
        shape = tuple(head["weight"].shape) if "weight" in head else None
        raise HIRError(
            f"reward model {str(path)!r}: its head has shape {shape}, but the model's hidden size "
            f"is {policy.hidden_size} and a reward is one number (1, {policy.hidden_size}); the "
            "head belongs to another model: save the reward model again"
        )
    model.head.load_state_dict({k: v.to(policy.device) for k, v in head.items()})
    return model.eval().requires_grad_(False)


def _load_sequence_classifier(path: Path, device: str | None) -> SequenceClassifierReward:
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from hir.models.loading import resolve_device

    config = AutoConfig.from_pretrained(path)
    architectures = config.architectures or []
    if not any(name.endswith("ForSequenceClassification") for name in architectures):
        raise HIRError(
            f"reward model {str(path)!r} is a {', '.join(architectures) or 'model'} without a reward "
            f"head: give a folder that `hir instructgpt` wrote (with {REWARD_CARD}), or a "
            "sequence-classification model with one output"
        )
    if config.num_labels != 1:
        raise HIRError(
            f"reward model {str(path)!r} has {config.num_labels} outputs (num_labels); a reward "
            "model gives one number per output: give one trained with num_labels=1"
        )
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32)
    model.to(resolve_device(device)).requires_grad_(False)
    return SequenceClassifierReward(model, AutoTokenizer.from_pretrained(path))
