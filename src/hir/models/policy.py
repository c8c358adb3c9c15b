"""The model side of a policy, and the one place where encoder-decoder and decoder-only models
differ: how token ids become tensors, how output tokens get their logits, how outputs are
generated. The text side (prompt format, truncation, token ids) is `policy.format`
(`hir.models.prompts.PromptFormat`).

    policy = load_policy("google/flan-t5-base")      # hir.models.loading; or a folder, or "gpt2"
    outputs = policy.generate(prompts, num_samples=4, do_sample=True)
    batch = policy.encode(prompts, outputs)           # padded tensors
    logits, labels = policy.output_logits(batch)      # aligned: logits[b, t] predicts labels[b, t]
    statistics = policy.output_statistics(batch)      # log p(label), entropy... what losses read
    states, labels = policy.output_hidden_states(batch)  # the last layer's state that predicts labels[b, t]

The two kinds are `Seq2SeqPolicy` (`hir.models.seq2seq`) and `CausalPolicy` (`hir.models.causal`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from hir.errors import HIRError
from hir.losses import IGNORE_INDEX, TokenStatistics, output_layer_statistics, token_statistics
from hir.models.adapters import TrainingScope
from hir.models.prompts import PromptFormat
from hir.models.speed.frozen_layers import FrozenLayerCache, FrozenLayers
from hir.models.speed.output_layer import FusedOutputLayers, output_layer_skipped
from hir.models.speed.sharding import is_sharded


@dataclass
class SharedPrefix:
    """Prompt blocks that rows of a decoder-only batch share (`hir.models.speed.blocks`), run once
    each. `levels[j]`: the distinct blocks at tokens j*BLOCK_TOKENS.. [D_j, BLOCK_TOKENS];
    `parents[j]`: for each, its prefix's block in `levels[j - 1]` (empty for j = 0);
    `of_row[b, j]`: row b's block in `levels[j]`, -1 past its last one."""

    levels: list[torch.Tensor]
    parents: list[torch.Tensor]
    of_row: torch.Tensor

    def to(self, device: torch.device | str) -> SharedPrefix:
        return SharedPrefix([t.to(device) for t in self.levels],
                            [t.to(device) for t in self.parents], self.of_row.to(device))  # fmt: skip


@dataclass
class EncodedBatch:
    """Padded model inputs for (prompt, output) pairs. `labels` holds the output token ids
    (with EOS) and IGNORE_INDEX elsewhere, in the layout `Policy.output_logits` aligns to.

    When rows repeat a prompt (several outputs of one query), the prompt can be run once. For an
    encoder-decoder model, `prompt_inputs` holds one row per distinct prompt, `prompt_of_row[b]`
    the one row b reads, and `inputs` the decoder's side. For a decoder-only model, `prefix`
    holds the shared prompt blocks and `inputs` what follows each row's last one."""

    inputs: dict[str, torch.Tensor]
    labels: torch.Tensor
    prompt_inputs: dict[str, torch.Tensor] | None = None
    prompt_of_row: torch.Tensor | None = None
    prefix: SharedPrefix | None = None

    @property
    def shares_prompts(self) -> bool:
        return self.prompt_inputs is not None or self.prefix is not None

    def to(self, device: torch.device | str) -> EncodedBatch:
        def move(tensors):
            return None if tensors is None else {k: v.to(device) for k, v in tensors.items()}

        return EncodedBatch(
            move(self.inputs),
            self.labels.to(device),
            move(self.prompt_inputs),
            None if self.prompt_of_row is None else self.prompt_of_row.to(device),
            None if self.prefix is None else self.prefix.to(device),
        )


# A context around each forward pass of a shared-prefix batch: the blocks at a level, or (None)
# the rows (see CausalPolicy._output_logits).
PassContext = Callable[[int | None], AbstractContextManager]


class Policy:
    """A model, its tokenizer and its prompt format (`format`): what sampling, the losses, the
    trainers and evaluation talk to. A subclass per model kind fills in the tensor layout."""

    is_encoder_decoder: bool = False
    # Text put before an output when it follows a plain prompt in one sequence ("A: (B)").
    plain_completion_prefix: str = ""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer,
        max_prompt_tokens: int = 1024,
        max_output_tokens: int = 256,
        prompt_format: str = "auto",
        source: str = "",
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.format = PromptFormat(
            tokenizer, prompt_format, is_encoder_decoder=self.is_encoder_decoder,
            max_positions=self.max_positions_of(model),
            plain_completion_prefix=self.plain_completion_prefix,
            max_prompt_tokens=max_prompt_tokens, max_output_tokens=max_output_tokens,
        )  # fmt: skip
        self.source = source  # the name or path it was loaded by, as runs record it
        # What is trained (set_training_scope): all weights until told otherwise.
        self.training_scope = TrainingScope()
        # What only makes it faster (`hir.models.speed`): the frozen lower layers' activations,
        # kept when only the top layers are trained, and the output layer fused into the loss.
        self.frozen = FrozenLayers()
        self.output_layers = FusedOutputLayers()

    @staticmethod
    def max_positions_of(model: PreTrainedModel) -> int | None:
        """How many positions a sequence (prompt and output) may fill; None: no fixed limit."""
        config = model.config
        return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)  # fmt: skip

    @property
    def frozen_cache(self) -> FrozenLayerCache | None:
        return self.frozen.cache

    @frozen_cache.setter
    def frozen_cache(self, cache: FrozenLayerCache | None) -> None:
        self.frozen = FrozenLayers(cache)

    @property
    def chat(self) -> bool:
        return self.format.chat

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def hidden_size(self) -> int:
        # T5's and GPT-2's configs both map `hidden_size` to their own name for the width.
        return self.model.config.hidden_size

    def set_training_scope(self, scope: TrainingScope) -> Policy:
        """Freeze, or wrap in a LoRA adapter, the model as `scope` says (in place)."""
        from hir.models.adapters import apply_training_scope

        self.model, self.frozen_cache = apply_training_scope(
            self.model, scope, self.is_encoder_decoder
        )
        self.training_scope = scope
        return self

    def share_frozen_layers(self, copy: torch.nn.Module) -> FrozenLayerCache | None:
        """Hand `copy`, a copy of this policy's model made with its frozen layers frozen (PPO's
        value model, or its reference), the frozen layers' kept activations in its passes
        (`output_logits`, `output_hidden_states`), so that they run once for both networks.
        Returns the twin cache that does it, for the caller to hold (the policy keeps it only
        as long as the caller does); None where no cache is kept (every layer trains, or the
        cache is off)."""
        from hir.models.adapters import transformer_layers

        return (
            self.frozen.share_with(copy, transformer_layers(copy)[1])
            if self.frozen.enabled
            else None
        )

    # -- text -> tensors ------------------------------------------------------------------------

    def encode(
        self,
        prompts: list[str],
        outputs: list[str],
        share_prompts: bool = False,
        contexts: Sequence[str] | None = None,
    ) -> EncodedBatch:
        """Model inputs for (prompt, output) pairs. With `share_prompts`, a prompt that several
        rows repeat is run once for all of them (same logits, less compute). `contexts`: text
        read between each prompt and its output (see `PromptFormat.prompt_ids`)."""
        return self.encode_ids(
            self.format.prompt_ids(prompts, contexts),
            self.format.output_ids(outputs),
            share_prompts,
        )

    def encode_ids(
        self,
        prompt_ids: list[list[int]],
        output_ids: Sequence[Sequence[int]],
        share_prompts: bool = False,
    ) -> EncodedBatch:
        """Like `encode`, from token ids (e.g. as sampled); outputs are taken as they are."""
        prompt_ids = self.format.fit_to_outputs(prompt_ids, output_ids)
        if share_prompts:
            shared = self._encode_shared(prompt_ids, output_ids)
            if shared is not None:
                return shared
        return self._encode_flat(prompt_ids, output_ids)

    def statistics_for(
        self,
        prompts: list[str],
        outputs: list[str],
        model=None,
        contexts: Sequence[str] | None = None,
    ) -> TokenStatistics:
        """`encode` then `output_statistics`, on the model's device. Shared prompt blocks are run
        once, unless the model is wrapped (DDP, DeepSpeed), which expects one forward per step."""
        share = runs_unwrapped(model if model is not None else self.model)
        batch = self.encode(prompts, outputs, share_prompts=share, contexts=contexts)
        return self.output_statistics(batch.to(self.device), model)

    def output_statistics(self, batch: EncodedBatch, model=None) -> TokenStatistics:
        """What the training losses read of the output tokens' distributions
        (`hir.losses.TokenStatistics`). Where the model's output layer is a plain linear layer
        (checked once per model), the loss runs it itself, fused with the statistics, at output
        positions only; otherwise from `output_logits`."""
        model = model if model is not None else self.model
        # Not through a DDP/FSDP/DeepSpeed wrapper: their parameters are theirs to gather.
        layer = self.output_layers.for_model(model) if runs_unwrapped(model) else None
        if layer is None:
            return token_statistics(*self.output_logits(batch, model))
        with output_layer_skipped(model, layer):
            hidden, labels = self.output_logits(batch, model)
        return output_layer_statistics(hidden, layer.weight, layer.bias, labels)

    def precompute_frozen_layers(self, prompts: list[str], outputs: list[str]) -> None:
        """With the frozen-layer cache on, run the frozen layers for these (prompt, output)
        pairs now, all together, rather than batch by batch in training."""
        if self.frozen.enabled:
            self.frozen.precompute(self.encode(prompts, outputs).inputs)

    # -- the model-kind specific part ------------------------------------------------------

    def _encode_flat(
        self, prompt_ids: list[list[int]], output_ids: Sequence[Sequence[int]]
    ) -> EncodedBatch:
        raise NotImplementedError

    def _encode_shared(
        self, prompt_ids: list[list[int]], output_ids: Sequence[Sequence[int]]
    ) -> EncodedBatch | None:
        """The batch with the prompt parts that rows share run once; None where none is."""
        raise NotImplementedError

    def output_logits(self, batch: EncodedBatch, model=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits [B, T, V] and labels [B, T], aligned so that logits[b, t] predicts labels[b, t].
        `model` is the module to run (e.g. accelerate's wrapped one); default `self.model`."""
        raise NotImplementedError

    def output_hidden_states(
        self, batch: EncodedBatch, model=None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The last layer's hidden states [B, T, H] and labels [B, T] in the layout of
        `output_logits`: the state at [b, t] has read the prompt and the output tokens before
        labels[b, t] and predicts it (what a value or reward head reads). For batches encoded
        without shared prompts."""
        raise NotImplementedError

    def all_position_logits(self, batch: EncodedBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits at every position and the matching labels, as `model(input_ids, labels=...)`
        computes them (prompt positions included): what the public HIR code computes."""
        raise NotImplementedError

    def pad_prompts(self, ids: list[list[int]]) -> dict[str, torch.Tensor]:
        """Padded `generate` inputs for prompt token ids (left-padded for decoder-only models)."""
        raise NotImplementedError

    def new_tokens(self, generated: torch.Tensor, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The sampled part of `generate`'s output for `inputs`."""
        raise NotImplementedError

    def _generate_batch(
        self, inputs: dict[str, torch.Tensor], num_samples: int, options: dict
    ) -> torch.Tensor:
        raise NotImplementedError

    # -- generation --------------------------------------------------------------------------

    @torch.no_grad()
    def generate(
        self,
        prompts: list[str],
        *,
        num_samples: int = 1,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        max_new_tokens: int = 32,
        batch_size: int = 32,
        progress: str | None = None,
        return_token_ids: bool = False,
    ) -> list[list[str]] | list[list[tuple[str, tuple[int, ...]]]]:
        """`num_samples` outputs per prompt. Prompts are grouped by length so that each
        `generate` call serves many prompts with little padding; results keep input order.

        With `return_token_ids`, each output is (text, the token ids as sampled, up to and
        including EOS): what PPO must score, since re-encoding the text can segment it into
        tokens the policy never chose."""
        if num_samples > 1 and not do_sample:
            raise HIRError(
                "num_samples > 1 needs do_sample=True (greedy decoding gives one output)"
            )
        was_training = self.model.training
        self.model.eval()
        ids = self.format.prompt_ids(prompts, reserve=max_new_tokens)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        results: list[list] = [[] for _ in prompts]
        sampling = {"do_sample": True, "temperature": temperature, "top_k": top_k, "top_p": top_p}
        starts = range(0, len(order), batch_size)
        for start in tqdm(starts, desc=progress, disable=None if progress else True, leave=False):
            chunk = order[start : start + batch_size]
            inputs = {
                k: v.to(self.device) for k, v in self.pad_prompts([ids[i] for i in chunk]).items()
            }
            options = {
                **(sampling if do_sample else {"do_sample": False}),
                "max_new_tokens": max_new_tokens,
                "pad_token_id": self.tokenizer.pad_token_id,
                "eos_token_id": self.format.end_token_id,
            }
            new_tokens = self.new_tokens(self._generate_batch(inputs, num_samples, options), inputs)
            outputs = self.format.decode(new_tokens)
            if return_token_ids:
                outputs = list(zip(outputs, self.format.until_end(new_tokens)))
            for j, i in enumerate(chunk):
                results[i] = outputs[j * num_samples : (j + 1) * num_samples]
        self.model.train(was_training)
        return results

    # -- weights -------------------------------------------------------------------------------

    def load_weights(self, folder: str | os.PathLike) -> None:
        """Load the weights `save_pretrained` wrote to `folder` into this policy's model in
        place (e.g. a checkpoint's), keeping its device and dtype. For a LoRA model, the
        adapter's weights."""
        from hir.models.adapters import is_adapted, load_adapter_weights
        from hir.models.weights import load_weights_into

        if is_adapted(self.model):
            load_adapter_weights(self.model, Path(folder))
        else:
            load_weights_into(self.model, Path(folder))
        self.frozen.weights_changed()

    def save(self, path: str | os.PathLike, merge: bool = True) -> None:
        """An ordinary model folder; a LoRA adapter is merged into the weights (unless
        `merge=False`, which writes the adapter alone)."""
        from hir.models.adapters import merged_model

        (merged_model(self.model) if merge else self.model).save_pretrained(path)
        self.tokenizer.save_pretrained(path)


def runs_unwrapped(model) -> bool:
    """A model called directly (a transformers model, or one with a peft adapter), rather than
    through a DDP/DeepSpeed wrapper that expects one forward per step, and not sharded (FSDP2
    gathers a block's weights in its forward: hir must not read them around it)."""
    if is_sharded(model):
        return False
    if isinstance(model, PreTrainedModel):
        return True
    return isinstance(getattr(getattr(model, "base_model", None), "model", None), PreTrainedModel)


def longest_output_width(labels: torch.Tensor) -> int:
    """The longest output of a left-padded causal batch: its outputs fill the last this many
    positions."""
    return int((labels != IGNORE_INDEX).sum(-1).max())


def require_flat(batch: EncodedBatch) -> None:
    if batch.shares_prompts:
        raise ValueError("this method needs a batch encoded without share_prompts")


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that count real tokens only, so that (left) padding does not shift them."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


def pad_rows(rows: list[list[int]], value: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    padded = torch.full((len(rows), width), value, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if left else slice(0, len(row))
        padded[i, span] = torch.tensor(row, dtype=torch.long)
        mask[i, span] = 1
    return padded, mask
