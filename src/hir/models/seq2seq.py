"""Encoder-decoder models (T5, FLAN-T5, BART): the prompt feeds the encoder, the output the
decoder. A prompt that several rows repeat runs through the encoder once."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers.modeling_outputs import BaseModelOutput

from hir.losses import IGNORE_INDEX
from hir.models.policy import (
    EncodedBatch,
    Policy,
    pad_rows,
    require_flat,
)


class Seq2SeqPolicy(Policy):
    """Encoder-decoder (T5, FLAN-T5, BART): the prompt feeds the encoder, the output the decoder."""

    is_encoder_decoder = True

    @staticmethod
    def max_positions_of(model) -> None:
        return None  # relative positions; the prompt and the output are separate sequences

    def pad_prompts(self, ids: list[list[int]]) -> dict[str, torch.Tensor]:
        input_ids, attention_mask = pad_rows(ids, self.tokenizer.pad_token_id, left=False)
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def _encode_flat(
        self, prompt_ids: list[list[int]], output_ids: Sequence[Sequence[int]]
    ) -> EncodedBatch:
        decoder_inputs, labels = self._decoder_inputs(output_ids)
        return EncodedBatch({**self.pad_prompts(prompt_ids), **decoder_inputs}, labels)

    def _encode_shared(
        self, prompt_ids: list[list[int]], output_ids: Sequence[Sequence[int]]
    ) -> EncodedBatch | None:
        """The encoder runs once per distinct prompt."""
        distinct: dict[tuple[int, ...], int] = {}
        prompt_of_row = [distinct.setdefault(tuple(p), len(distinct)) for p in prompt_ids]
        if len(distinct) == len(prompt_ids):
            return None
        prompts = [list(p) for p in distinct]
        decoder_inputs, labels = self._decoder_inputs(output_ids)
        return EncodedBatch(
            decoder_inputs, labels, self.pad_prompts(prompts), torch.tensor(prompt_of_row)
        )

    def _decoder_inputs(
        self, output_ids: Sequence[Sequence[int]]
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        labels, _ = pad_rows([list(o) for o in output_ids], IGNORE_INDEX, left=False)
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
        require_flat(batch)
        model = model if model is not None else self.model
        outputs = model(**batch.inputs, output_hidden_states=True)
        return outputs.decoder_hidden_states[-1], batch.labels

    def all_position_logits(self, batch: EncodedBatch) -> tuple[torch.Tensor, torch.Tensor]:
        require_flat(batch)
        return self.model(**batch.inputs).logits, batch.labels

    def _generate_batch(
        self, inputs: dict[str, torch.Tensor], num_samples: int, options: dict
    ) -> torch.Tensor:
        # transformers runs the encoder once per prompt, then copies its output for the n samples.
        return self.model.generate(**inputs, num_return_sequences=num_samples, **options)

    def new_tokens(self, generated: torch.Tensor, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        # The output starts with the decoder start token, which was not sampled.
        return generated[:, 1:]
