"""Decoder-only models (GPT-2, Llama, Qwen, SmolLM): prompt and output are one sequence, the loss
covers the output tokens only. A prompt that several rows repeat runs once, its KV cache indexed
out to the rows inside the autograd graph."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch

from hir.losses import IGNORE_INDEX
from hir.models.kv_cache import cache_argument, returned_cache
from hir.models.policy import (
    EncodedBatch,
    Policy,
    longest_output_width,
    pad_rows,
    position_ids,
    require_flat,
)


class CausalPolicy(Policy):
    """Decoder-only (GPT-2, Llama, Qwen): prompt and output are one sequence; the loss covers
    the output tokens only."""

    plain_completion_prefix = " "

    def pad_prompts(self, ids: list[list[int]]) -> dict[str, torch.Tensor]:
        # Left padding, so that every prompt ends where generation starts.
        input_ids, attention_mask = pad_rows(ids, self.tokenizer.pad_token_id, left=True)
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
        input_ids, attention_mask = pad_rows(sequences, self.tokenizer.pad_token_id, left=True)
        label_tensor, _ = pad_rows(labels, IGNORE_INDEX, left=True)
        inputs = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "position_ids": position_ids(attention_mask),
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
        prefix["position_ids"] = position_ids(prefix["attention_mask"])
        rows = torch.tensor(prompt_of_row)
        continuations = [[prompts[r][-1], *o] for r, o in zip(prompt_of_row, output_ids)]
        input_ids, attention_mask = pad_rows(continuations, self.tokenizer.pad_token_id, left=False)
        offsets = prefix["attention_mask"].sum(-1)[rows].unsqueeze(1)
        labels, _ = pad_rows([list(o) for o in output_ids], IGNORE_INDEX, left=False)
        positions = offsets + torch.arange(input_ids.shape[1])
        if (
            self.format.max_positions is not None
        ):  # a short row's padding may run past the last position
            positions = positions.clamp(max=self.format.max_positions - 1)
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
        output_width = longest_output_width(batch.labels)
        with row_pass:
            logits = model(**batch.inputs, logits_to_keep=output_width + 1).logits
        return logits[:, :-1], batch.labels[:, -output_width:]

    def output_hidden_states(
        self, batch: EncodedBatch, model=None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        require_flat(batch)
        model = model if model is not None else self.model
        width = longest_output_width(batch.labels)
        hidden = model(**batch.inputs, output_hidden_states=True, logits_to_keep=1).hidden_states[
            -1
        ]
        # As in output_logits: the state one position before output token t predicts it.
        return hidden[:, -width - 1 : -1], batch.labels[:, -width:]

    def all_position_logits(self, batch: EncodedBatch) -> tuple[torch.Tensor, torch.Tensor]:
        require_flat(batch)
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
            cache = returned_cache(model(**prefix, use_cache=True, logits_to_keep=1))
        cache.batch_select_indices(rows)
        attention_mask = torch.cat(
            [prefix["attention_mask"][rows], batch.inputs["attention_mask"]], 1
        )
        with row_pass:
            logits = model(
                input_ids=batch.inputs["input_ids"],
                attention_mask=attention_mask,
                position_ids=batch.inputs["position_ids"],
                use_cache=True,
                **{cache_argument(model): cache},
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
        positions = position_ids(mask)
        prefill = self.model(
            input_ids=ids[:, :-1],
            attention_mask=mask[:, :-1],
            position_ids=positions[:, :-1],
            use_cache=True,
        )
        cache = returned_cache(prefill)
        if not hasattr(cache, "batch_repeat_interleave"):  # a cache type that cannot be copied
            return self.model.generate(**inputs, num_return_sequences=num_samples, **options)
        cache.batch_repeat_interleave(num_samples)
        return self.model.generate(
            input_ids=ids.repeat_interleave(num_samples, 0),
            attention_mask=mask.repeat_interleave(num_samples, 0),
            **{cache_argument(self.model): cache},
            **options,
        )

    def new_tokens(self, generated: torch.Tensor, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return generated[:, inputs["input_ids"].shape[1] :]
