"""Loading Hugging Face models, and the one place where encoder-decoder and decoder-only models
differ: how (prompt, output) text becomes tensors and how output tokens get their logits.

Everything downstream (sampling, losses, trainers, evaluation) talks to a `Policy`:

    policy = load_policy("google/flan-t5-base")      # or a local folder, or "gpt2"
    outputs = policy.generate(prompts, num_samples=4, do_sample=True)
    batch = policy.encode(prompts, outputs)           # padded tensors
    logits, labels = policy.output_logits(batch)      # aligned: logits[b, t] predicts labels[b, t]
    states, labels = policy.output_hidden_states(batch)  # the last layer's state that predicts labels[b, t]
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from tqdm.auto import tqdm
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    PreTrainedModel,
)
from transformers.modeling_outputs import BaseModelOutput
from transformers.utils import logging as hf_logging

from hir.errors import HIRError
from hir.frozen_layers import FrozenLayerCache
from hir.losses import IGNORE_INDEX


@dataclass
class EncodedBatch:
    """Padded model inputs for (prompt, output) pairs. `labels` holds the output token ids
    (with EOS) and IGNORE_INDEX elsewhere, in the layout `Policy.output_logits` aligns to.

    When rows repeat a prompt (several outputs of one query under one instruction), the prompt
    can be run once: `prompt_inputs` then holds one row per distinct prompt, `prompt_of_row[b]`
    the one row b continues, and `inputs` only what follows it."""

    inputs: dict[str, torch.Tensor]
    labels: torch.Tensor
    prompt_inputs: dict[str, torch.Tensor] | None = None
    prompt_of_row: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> EncodedBatch:
        def move(tensors):
            return None if tensors is None else {k: v.to(device) for k, v in tensors.items()}

        return EncodedBatch(
            move(self.inputs),
            self.labels.to(device),
            move(self.prompt_inputs),
            None if self.prompt_of_row is None else self.prompt_of_row.to(device),
        )


PROMPT_FORMATS = ("auto", "chat", "plain")
# A model folder holds at least one of these when its tokenizer was saved with it.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "spiece.model",
                   "vocab.json", "vocab.txt")  # fmt: skip


class Policy:
    """A model, its tokenizer, and how text becomes tensors for it.

    Prompt formats: "plain" feeds the prompt text as it is (the paper's protocol); "chat" puts
    it in the user turn of the tokenizer's chat template, the output is the assistant's turn
    and ends with the template's end-of-turn token; "auto" is chat when a template exists."""

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
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_prompt_tokens = max_prompt_tokens
        self.max_output_tokens = max_output_tokens
        if tokenizer.eos_token_id is None:
            raise HIRError("the tokenizer has no EOS token; set tokenizer.eos_token before use")
        if tokenizer.pad_token_id is None:
            # GPT-2 style tokenizers have no pad token; padding is masked out anyway.
            tokenizer.pad_token = tokenizer.eos_token
        self.chat = _uses_chat(prompt_format, tokenizer, self.is_encoder_decoder)
        # The token that ends an output: the end-of-turn token under a chat template.
        self.end_token_id = end_of_turn_id(tokenizer) if self.chat else tokenizer.eos_token_id
        self.completion_prefix = "" if self.chat else self.plain_completion_prefix
        self.source = ""  # the name or path it was loaded by, when `load_policy` loaded it
        self._warned_cut = False
        # Set by `apply_training_scope` when the lower layers are frozen (decoder-only models).
        self.frozen_cache: FrozenLayerCache | None = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # -- text -> token ids ------------------------------------------------------------------

    def render_prompts(self, prompts: list[str]) -> list[str]:
        """The text the model reads for each prompt: the prompt itself, or under a chat
        template its user turn followed by the opening of the assistant's turn."""
        if not self.chat:
            return list(prompts)
        return [
            self.tokenizer.apply_chat_template(
                [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
            )
            for p in prompts
        ]

    def prompt_ids(
        self,
        prompts: list[str],
        contexts: Sequence[str] | None = None,
        reserve: int | None = None,
    ) -> list[list[int]]:
        """Token ids of the rendered prompts, each followed by its `context` (the start of an
        output that the model reads rather than predicts, as in HIR's sub-output training).
        `reserve`: positions to leave free for the output (None: the prompt is cut to
        `max_prompt_tokens` only; `encode_ids` then cuts it to fit beside its output)."""
        texts = self.render_prompts(prompts)
        if contexts is not None:
            texts = [t + c for t, c in zip(texts, contexts, strict=True)]
        # Keep the end of an over-long prompt: the query and "A:" matter more than the start.
        # A rendered chat prompt already holds its special tokens (BOS included).
        ids = self.tokenizer(texts, add_special_tokens=not self.chat)["input_ids"]
        limit = self.max_prompt_tokens if reserve is None else self.prompt_limit(reserve)
        return [self._cut(row, limit) for row in ids]

    def _cut(self, prompt: list[int], limit: int) -> list[int]:
        if len(prompt) > limit and not self._warned_cut:
            self._warned_cut = True
            print(f"hir: a prompt of {len(prompt)} tokens is cut to its last {limit}, to leave room for the output", file=sys.stderr)  # fmt: skip
        return prompt[-limit:]

    def prompt_limit(self, reserve: int) -> int:
        """The most prompt tokens the model reads with `reserve` positions left for the output."""
        positions = self.max_positions
        if positions is None:
            return self.max_prompt_tokens
        if reserve >= positions:
            raise HIRError(
                f"{reserve} output tokens leave no room for the prompt in this model's "
                f"{positions} positions: lower --max_new_tokens"
            )
        return min(self.max_prompt_tokens, positions - reserve)

    @property
    def max_positions(self) -> int | None:
        """How many positions a sequence (prompt and output) may fill; None: no fixed limit
        (encoder-decoder models, whose prompt and output are separate sequences)."""
        config = self.model.config
        return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)  # fmt: skip

    def output_ids(self, outputs: list[str]) -> list[list[int]]:
        texts = [self.completion_prefix + o for o in outputs]
        ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [row[: self.max_output_tokens - 1] + [self.end_token_id] for row in ids]

    def decode(self, token_ids: torch.Tensor) -> list[str]:
        return [t.strip() for t in self.tokenizer.batch_decode(token_ids, skip_special_tokens=True)]

    # -- the model-kind specific part ------------------------------------------------------

    def encode(
        self,
        prompts: list[str],
        outputs: list[str],
        share_prompts: bool = False,
        contexts: Sequence[str] | None = None,
    ) -> EncodedBatch:
        """Model inputs for (prompt, output) pairs. With `share_prompts`, a prompt that several
        rows repeat is run once for all of them (same logits, less compute). `contexts`: text
        read between each prompt and its output (see `prompt_ids`)."""
        return self.encode_ids(
            self.prompt_ids(prompts, contexts), self.output_ids(outputs), share_prompts
        )

    def encode_ids(
        self,
        prompt_ids: list[list[int]],
        output_ids: Sequence[Sequence[int]],
        share_prompts: bool = False,
    ) -> EncodedBatch:
        """Like `encode`, from token ids (e.g. as sampled); outputs are taken as they are."""
        if self.max_positions is not None:  # prompt and output share the positions
            prompt_ids = [self._cut(list(p), self.prompt_limit(len(o)))
                          for p, o in zip(prompt_ids, output_ids)]  # fmt: skip
        if share_prompts:
            distinct: dict[tuple[int, ...], int] = {}
            rows = [distinct.setdefault(tuple(p), len(distinct)) for p in prompt_ids]
            prompts = [list(p) for p in distinct]
            if len(prompts) < len(rows) and self._can_share(prompts):
                return self._encode_shared(prompts, rows, output_ids)
        return self._encode_flat(prompt_ids, output_ids)

    def _can_share(self, prompts: list[list[int]]) -> bool:
        return True

    def _encode_flat(
        self, prompt_ids: list[list[int]], output_ids: Sequence[Sequence[int]]
    ) -> EncodedBatch:
        raise NotImplementedError

    def _encode_shared(
        self,
        prompts: list[list[int]],
        prompt_of_row: list[int],
        output_ids: Sequence[Sequence[int]],
    ) -> EncodedBatch:
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

    @property
    def hidden_size(self) -> int:
        # T5's and GPT-2's configs both map `hidden_size` to their own name for the width.
        return self.model.config.hidden_size

    def load_weights(self, folder: str | os.PathLike) -> None:
        """Load the weights `save_pretrained` wrote to `folder` into this policy's model in
        place (e.g. a checkpoint's), keeping its device and dtype. For a LoRA model, the
        adapter's weights."""
        from hir.adapters import is_adapted, load_adapter_weights

        if is_adapted(self.model):
            load_adapter_weights(self.model, Path(folder))
        else:
            load_weights_into(self.model, Path(folder))
        if self.frozen_cache is not None:
            self.frozen_cache.clear()

    def logits_for(
        self,
        prompts: list[str],
        outputs: list[str],
        model=None,
        contexts: Sequence[str] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`encode` then `output_logits`, on the model's device. Repeated prompts are run once,
        unless the model is wrapped (DDP, DeepSpeed), which expects one forward per step."""
        share = _runs_unwrapped(model if model is not None else self.model)
        batch = self.encode(prompts, outputs, share_prompts=share, contexts=contexts)
        return self.output_logits(batch.to(self.device), model)

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
        ids = self.prompt_ids(prompts, reserve=max_new_tokens)
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
                "eos_token_id": self.end_token_id,
            }
            new_tokens = self.new_tokens(self._generate_batch(inputs, num_samples, options), inputs)
            outputs = self.decode(new_tokens)
            if return_token_ids:
                outputs = list(zip(outputs, self._until_eos(new_tokens)))
            for j, i in enumerate(chunk):
                results[i] = outputs[j * num_samples : (j + 1) * num_samples]
        self.model.train(was_training)
        return results

    def _generate_batch(
        self, inputs: dict[str, torch.Tensor], num_samples: int, options: dict
    ) -> torch.Tensor:
        # Encoder-decoder models: transformers runs the encoder once per prompt, then copies its
        # output for the n samples.
        return self.model.generate(**inputs, num_return_sequences=num_samples, **options)

    def new_tokens(self, generated: torch.Tensor, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The sampled part of `generate`'s output for `inputs`."""
        raise NotImplementedError

    def _until_eos(self, new_tokens: torch.Tensor) -> list[tuple[int, ...]]:
        """Each row up to and including its first EOS; after it, generate only pads."""
        eos = self.end_token_id
        rows = []
        for row in new_tokens.tolist():
            rows.append(tuple(row[: row.index(eos) + 1] if eos in row else row))
        return rows

    def save(self, path: str | os.PathLike, merge: bool = True) -> None:
        """An ordinary model folder; a LoRA adapter is merged into the weights (unless
        `merge=False`, which writes the adapter alone)."""
        from hir.adapters import merged_model

        (merged_model(self.model) if merge else self.model).save_pretrained(path)
        self.tokenizer.save_pretrained(path)


class Seq2SeqPolicy(Policy):
    """Encoder-decoder (T5, FLAN-T5, BART): the prompt feeds the encoder, the output the decoder."""

    max_positions = None  # relative positions; the prompt and the output are separate sequences

    is_encoder_decoder = True

    def pad_prompts(self, ids: list[list[int]]) -> dict[str, torch.Tensor]:
        input_ids, attention_mask = _pad(ids, self.tokenizer.pad_token_id, left=False)
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def _encode_flat(
        self, prompt_ids: list[list[int]], output_ids: Sequence[Sequence[int]]
    ) -> EncodedBatch:
        decoder_inputs, labels = self._decoder_inputs(output_ids)
        return EncodedBatch({**self.pad_prompts(prompt_ids), **decoder_inputs}, labels)

    def _encode_shared(
        self,
        prompts: list[list[int]],
        prompt_of_row: list[int],
        output_ids: Sequence[Sequence[int]],
    ) -> EncodedBatch:
        decoder_inputs, labels = self._decoder_inputs(output_ids)
        return EncodedBatch(
            decoder_inputs, labels, self.pad_prompts(prompts), torch.tensor(prompt_of_row)
        )

    def _decoder_inputs(
        self, output_ids: Sequence[Sequence[int]]
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        labels, _ = _pad([list(o) for o in output_ids], IGNORE_INDEX, left=False)
        # The decoder reads the labels shifted right behind the start token (teacher forcing).
        decoder_input_ids = self.model.prepare_decoder_input_ids_from_labels(labels=labels)
        return {
            "decoder_input_ids": decoder_input_ids,
            "decoder_attention_mask": (labels != IGNORE_INDEX).long(),
        }, labels

    def output_logits(self, batch: EncodedBatch, model=None) -> tuple[torch.Tensor, torch.Tensor]:
        model = model if model is not None else self.model
        if batch.prompt_inputs is None:
            return model(**batch.inputs).logits, batch.labels
        # The encoder runs once per distinct prompt; each row's decoder reads its prompt's states.
        # (Called directly, the encoder runs outside accelerate's autocast wrapper of forward:
        # in the weights' dtype, so load bf16 weights rather than rely on autocast for it.)
        rows = batch.prompt_of_row
        states = model.get_encoder()(**batch.prompt_inputs).last_hidden_state[rows]
        logits = model(
            encoder_outputs=BaseModelOutput(last_hidden_state=states),
            attention_mask=batch.prompt_inputs["attention_mask"][rows],
            **batch.inputs,
        ).logits
        return logits, batch.labels

    def output_hidden_states(
        self, batch: EncodedBatch, model=None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        _require_flat(batch)
        model = model if model is not None else self.model
        outputs = model(**batch.inputs, output_hidden_states=True)
        return outputs.decoder_hidden_states[-1], batch.labels

    def all_position_logits(self, batch: EncodedBatch) -> tuple[torch.Tensor, torch.Tensor]:
        _require_flat(batch)
        return self.model(**batch.inputs).logits, batch.labels

    def new_tokens(self, generated: torch.Tensor, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        # The output starts with the decoder start token, which was not sampled.
        return generated[:, 1:]


class CausalPolicy(Policy):
    """Decoder-only (GPT-2, Llama, Qwen): prompt and output are one sequence; the loss covers
    the output tokens only."""

    plain_completion_prefix = " "

    def pad_prompts(self, ids: list[list[int]]) -> dict[str, torch.Tensor]:
        # Left padding, so that every prompt ends where generation starts.
        input_ids, attention_mask = _pad(ids, self.tokenizer.pad_token_id, left=True)
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def _encode_flat(
        self, prompt_ids: list[list[int]], output_ids: Sequence[Sequence[int]]
    ) -> EncodedBatch:
        # Left padding: every row's output ends at the last position, so the model is asked for
        # the logits of the last `output_width` positions only (see output_logits).
        sequences, labels = [], []
        for prompt, output in zip(prompt_ids, output_ids):
            sequences.append(prompt + list(output))
            labels.append([IGNORE_INDEX] * len(prompt) + list(output))
        input_ids, attention_mask = _pad(sequences, self.tokenizer.pad_token_id, left=True)
        label_tensor, _ = _pad(labels, IGNORE_INDEX, left=True)
        inputs = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "position_ids": _positions(attention_mask),
        }
        return EncodedBatch(inputs, label_tensor)

    def _can_share(self, prompts: list[list[int]]) -> bool:
        # The shared part is the prompt but its last token, which must predict the first output.
        return min(len(p) for p in prompts) >= 2

    def _encode_shared(
        self,
        prompts: list[list[int]],
        prompt_of_row: list[int],
        output_ids: Sequence[Sequence[int]],
    ) -> EncodedBatch:
        """The prompts but their last token, once each, left-padded; per row, that last token
        and the output, right-padded, at the positions that follow the row's prompt."""
        prefix = self.pad_prompts([p[:-1] for p in prompts])
        prefix["position_ids"] = _positions(prefix["attention_mask"])
        rows = torch.tensor(prompt_of_row)
        continuations = [[prompts[r][-1], *o] for r, o in zip(prompt_of_row, output_ids)]
        input_ids, attention_mask = _pad(continuations, self.tokenizer.pad_token_id, left=False)
        offsets = prefix["attention_mask"].sum(-1)[rows].unsqueeze(1)
        labels, _ = _pad([list(o) for o in output_ids], IGNORE_INDEX, left=False)
        positions = offsets + torch.arange(input_ids.shape[1])
        if self.max_positions is not None:  # a short row's padding may run past the last position
            positions = positions.clamp(max=self.max_positions - 1)
        inputs = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "position_ids": positions,
        }
        return EncodedBatch(inputs, labels, prefix, rows)

    def output_logits(self, batch: EncodedBatch, model=None) -> tuple[torch.Tensor, torch.Tensor]:
        model = model if model is not None else self.model
        if self.frozen_cache is not None and model is self.frozen_cache.model:
            return self.frozen_cache.output_logits(model, batch, self._output_logits)
        return self._output_logits(batch, model)

    def _output_logits(
        self, batch: EncodedBatch, model, prompt_pass=None, row_pass=None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`prompt_pass` and `row_pass`: contexts around the forward pass over the distinct
        prompts and over the rows (where `FrozenLayerCache` hands its activations over)."""
        prompt_pass = prompt_pass or contextlib.nullcontext()
        row_pass = row_pass or contextlib.nullcontext()
        if batch.prompt_inputs is not None:
            return self._shared_prompt_logits(batch, model, prompt_pass, row_pass)
        # Position t predicts token t+1. Only the last (longest output + 1) positions can predict
        # an output token: computing logits (B x T x vocabulary) for the prompt would be wasted.
        output_width = _output_width(batch.labels)
        with row_pass:
            logits = model(**batch.inputs, logits_to_keep=output_width + 1).logits
        return logits[:, :-1], batch.labels[:, -output_width:]

    def output_hidden_states(
        self, batch: EncodedBatch, model=None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        _require_flat(batch)
        model = model if model is not None else self.model
        width = _output_width(batch.labels)
        hidden = model(**batch.inputs, output_hidden_states=True, logits_to_keep=1).hidden_states[
            -1
        ]
        # As in output_logits: the state one position before output token t predicts it.
        return hidden[:, -width - 1 : -1], batch.labels[:, -width:]

    def all_position_logits(self, batch: EncodedBatch) -> tuple[torch.Tensor, torch.Tensor]:
        _require_flat(batch)
        logits = self.model(**batch.inputs).logits
        return logits[:, :-1], batch.labels[:, 1:]

    def _shared_prompt_logits(
        self, batch: EncodedBatch, model, prompt_pass, row_pass
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run each distinct prompt once, copy its KV cache to the rows that continue it (the
        copies stay in the autograd graph, so gradients flow back to the one prompt pass), then
        run every row's continuation."""
        rows = batch.prompt_of_row
        prefix = batch.prompt_inputs
        with prompt_pass:
            cache = model(**prefix, use_cache=True, logits_to_keep=1).past_key_values
        cache.batch_select_indices(rows)
        attention_mask = torch.cat(
            [prefix["attention_mask"][rows], batch.inputs["attention_mask"]], 1
        )
        with row_pass:
            logits = model(
                input_ids=batch.inputs["input_ids"],
                attention_mask=attention_mask,
                position_ids=batch.inputs["position_ids"],
                past_key_values=cache,
                use_cache=True,
            ).logits
        return logits[:, :-1], batch.labels

    def _generate_batch(
        self, inputs: dict[str, torch.Tensor], num_samples: int, options: dict
    ) -> torch.Tensor:
        """`num_return_sequences=n` would run each prompt through the model n times. Instead the
        prompt (all but its last token) is run once, its KV cache copied n times, and generation
        continues from it: the same tokens for the same seed, with 1/n of the prompt compute."""
        if num_samples == 1:
            return self.model.generate(**inputs, **options)
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        positions = _positions(mask)
        prefill = self.model(
            input_ids=ids[:, :-1],
            attention_mask=mask[:, :-1],
            position_ids=positions[:, :-1],
            use_cache=True,
        )
        cache = prefill.past_key_values
        if not hasattr(cache, "batch_repeat_interleave"):  # a cache type that cannot be copied
            return self.model.generate(**inputs, num_return_sequences=num_samples, **options)
        cache.batch_repeat_interleave(num_samples)
        return self.model.generate(
            input_ids=ids.repeat_interleave(num_samples, 0),
            attention_mask=mask.repeat_interleave(num_samples, 0),
            past_key_values=cache,
            **options,
        )

    def new_tokens(self, generated: torch.Tensor, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return generated[:, inputs["input_ids"].shape[1] :]


def _runs_unwrapped(model) -> bool:
    """A model called directly (a transformers model, or one with a peft adapter), rather than
    through a DDP/DeepSpeed wrapper that expects one forward per step."""
    if isinstance(model, PreTrainedModel):
        return True
    return isinstance(getattr(getattr(model, "base_model", None), "model", None), PreTrainedModel)


def _uses_chat(prompt_format: str, tokenizer, is_encoder_decoder: bool) -> bool:
    if prompt_format not in PROMPT_FORMATS:
        raise HIRError(
            f"unknown prompt format {prompt_format!r}: choose one of {', '.join(PROMPT_FORMATS)}"
        )
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if prompt_format == "chat" and not has_template:
        raise HIRError(
            "--prompt_format chat needs a tokenizer with a chat template, and this model's has "
            "none; use --prompt_format plain (or auto), or give a chat model"
        )
    if prompt_format == "chat" and is_encoder_decoder:
        raise HIRError("--prompt_format chat is for decoder-only models; use plain for this one")
    return prompt_format == "chat" or (
        prompt_format == "auto" and has_template and not is_encoder_decoder
    )


def end_of_turn_id(tokenizer) -> int:
    """The token a chat template puts right after an assistant's message (<|im_end|>,
    <|eot_id|>, <end_of_turn>...), found by rendering one; EOS when it is not a special token."""
    marker = "XYZZY"
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "a"}, {"role": "assistant", "content": marker}],
        tokenize=False,
    )
    after = text[text.rindex(marker) + len(marker) :]
    ids = tokenizer(after, add_special_tokens=False)["input_ids"]
    if ids and ids[0] in tokenizer.all_special_ids:
        return ids[0]
    return tokenizer.eos_token_id


def _output_width(labels: torch.Tensor) -> int:
    """The longest output of a left-padded causal batch: its outputs fill the last this many
    positions."""
    return int((labels != IGNORE_INDEX).sum(-1).max())


def _require_flat(batch: EncodedBatch) -> None:
    if batch.prompt_inputs is not None:
        raise ValueError("this method needs a batch encoded without share_prompts")


def load_weights_into(model: PreTrainedModel, folder: Path) -> None:
    """Load `model*.safetensors` (one file or shards) from `folder` into `model`. Weights that
    `save_pretrained` left out because they are tied to another (GPT-2's output embedding) are
    the same tensor as one that is loaded; any other missing weight is an error."""
    from safetensors.torch import load_file

    files = sorted(folder.glob("model*.safetensors"))
    if not files:
        from hir.adapters import ADAPTER_WEIGHTS

        if (folder / ADAPTER_WEIGHTS).is_file():
            raise HIRError(f"{folder} holds a LoRA adapter, not whole weights: load it into a model "
                           "built with the run's --lora_r (and --train_last_layers, --lora_target_modules)")  # fmt: skip
        raise HIRError(f"{folder} holds no model*.safetensors weights")
    state = {}
    for file in files:
        state.update(load_file(file, device=str(next(model.parameters()).device)))
    missing, unexpected = model.load_state_dict(state, strict=False)
    current = model.state_dict()
    loaded = {t.data_ptr() for name, t in current.items() if name in state}
    untied = [n for n in missing if current[n].data_ptr() not in loaded]
    if untied or unexpected:
        raise HIRError(
            f"the weights in {folder} do not fit this model (missing {untied[:3]}, unexpected "
            f"{unexpected[:3]}): resume with the model the run started from"
        )


def _positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that count real tokens only, so that (left) padding does not shift them."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


def _pad(rows: list[list[int]], value: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    padded = torch.full((len(rows), width), value, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if left else slice(0, len(row))
        padded[i, span] = torch.tensor(row, dtype=torch.long)
        mask[i, span] = 1
    return padded, mask


def resolve_device(device: str | None = None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def wrap_policy(model: PreTrainedModel, tokenizer, **kwargs) -> Policy:
    """The right `Policy` for an already loaded model."""
    cls = Seq2SeqPolicy if model.config.is_encoder_decoder else CausalPolicy
    return cls(model, tokenizer, **kwargs)


def as_policy(
    model: str | os.PathLike | Policy | PreTrainedModel,
    tokenizer=None,
    device: str | None = None,
) -> Policy:
    """A `Policy` from what a user has: a Hub id or local folder (loaded), a `Policy` (used as
    it is) or a loaded `PreTrainedModel` with its `tokenizer`."""
    if isinstance(model, Policy):
        return model
    if isinstance(model, PreTrainedModel):
        if tokenizer is None:
            raise HIRError("a loaded model needs its tokenizer: pass tokenizer=...")
        if device not in (None, "auto"):
            model.to(resolve_device(device))
        return wrap_policy(model, tokenizer)
    if not str(model):
        raise HIRError("no model given: set --model to a Hub id or a local folder")
    return load_policy(model, device=device)


def describe_model(model: str | os.PathLike | Policy | PreTrainedModel) -> str:
    """What a run records as its model: the name or path it was given, else the loaded model's
    `name_or_path`."""
    if isinstance(model, Policy):
        if model.source:
            return model.source
        model = model.model
    if hasattr(model, "get_base_model"):  # a peft model
        model = model.get_base_model()
    if isinstance(model, PreTrainedModel):
        return str(getattr(model, "name_or_path", "") or type(model).__name__)
    return str(model)


def load_policy(
    name_or_path: str | os.PathLike,
    device: str | None = None,
    dtype: str | torch.dtype | None = None,
    prompt_format: str = "auto",
    **kwargs,
) -> Policy:
    """Load a model and its tokenizer by Hub name, local folder, built-in name or GGUF file
    (`hir.model_sources`); picks the model class from the config (`is_encoder_decoder`). `dtype` is e.g. "bfloat16"; default float32."""
    from hir.model_sources import resolve_model, suggest_builtin

    name = resolve_model(name_or_path)  # built-in names and GGUF files become a folder
    # Hub ids are "name" or "org/name"; anything else is meant as a folder on disk.
    looks_local = name.startswith((".", "/", "~")) or name.count("/") > 1
    if looks_local and not Path(name).expanduser().exists():
        raise HIRError(
            f"model path {name!r} does not exist; give a folder with config.json or a Hub model id"
        )
    folder = Path(name).expanduser()
    has_model = (folder / "config.json").is_file()
    if has_model and not any((folder / f).is_file() for f in TOKENIZER_FILES):
        raise HIRError(
            f"model folder {name!r} holds no tokenizer (none of {', '.join(TOKENIZER_FILES)}): "
            "save it next to the model with tokenizer.save_pretrained(folder)"
        )
    hf_logging.disable_progress_bar()
    try:
        config = AutoConfig.from_pretrained(name)
        tokenizer = AutoTokenizer.from_pretrained(name)
        model_class = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
        torch_dtype = getattr(torch, dtype) if isinstance(dtype, str) else (dtype or torch.float32)
        model = model_class.from_pretrained(name, dtype=torch_dtype)
    except SafetensorError as exc:
        raise HIRError(
            f"the weights of model {name!r} cannot be read ({exc}): the file is damaged or was "
            "not copied whole; copy or save it again"
        ) from exc
    except (OSError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HIRError(
            f"cannot load model {name!r}: {first_line} (a local folder needs config.json, the "
            "weights and the tokenizer files; a Hub id needs the network or a filled cache)"
            + suggest_builtin(name)
        ) from exc
    model.to(resolve_device(device))
    policy = wrap_policy(model, tokenizer, prompt_format=prompt_format, **kwargs)
    policy.source = str(name_or_path)
    return policy
