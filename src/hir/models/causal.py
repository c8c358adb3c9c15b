"""Decoder-only models (GPT-2, Llama, Qwen, SmolLM): prompt and output are one sequence, the loss
covers the output tokens only. A prompt prefix that several rows share runs once, in blocks cut at
fixed positions, its KV cache indexed out to the rows inside the autograd graph."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch

from hir.losses import IGNORE_INDEX
from hir.models.policy import (
    EncodedBatch,
    PassContext,
    Policy,
    SharedPrefix,
    longest_output_width,
    pad_rows,
    position_ids,
    require_flat,
)
from hir.models.speed.blocks import BLOCK_TOKENS
from hir.models.speed.kv_cache import cache_argument, cache_of, layer_tensors, returned_cache

# Greedy answers longer than this are decoded in segments of it (`_greedy_in_segments`).
SEGMENT_TOKENS = 64


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

    def _encode_shared(
        self, prompt_ids: list[list[int]], output_ids: Sequence[Sequence[int]]
    ) -> EncodedBatch | None:
        """Each row's prompt, but for its last token, is cut into blocks at fixed positions
        (`hir.models.speed.blocks`); a block that several rows share (one query's prompt under two
        instructions, its samples, a sub-output's head) is one node, run once. What follows a
        row's last whole block (the rest of its prompt and its output) is the row's own, run
        after its blocks' KV cache. None where no block is shared: the flat batch is cheaper."""
        sequences = [list(p) + list(o) for p, o in zip(prompt_ids, output_ids)]
        window = getattr(self.model.config, "sliding_window", None)
        if window and max(map(len, sequences)) > window:
            return None  # a sliding-window cache drops early positions: rows could not read them
        whole_blocks = [(len(p) - 1) // BLOCK_TOKENS for p in prompt_ids]
        depth = max(whole_blocks)
        nodes: list[dict[tuple, int]] = [{} for _ in range(depth)]
        of_row = torch.full((len(sequences), max(depth, 1)), -1, dtype=torch.long)
        for row, (sequence, count) in enumerate(zip(sequences, whole_blocks)):
            for level in range(count):
                key = tuple(sequence[: (level + 1) * BLOCK_TOKENS])
                of_row[row, level] = nodes[level].setdefault(key, len(nodes[level]))
        if sum(map(len, nodes)) == sum(whole_blocks):  # no block is shared
            return None
        levels, parents = [], []
        for level, keys in enumerate(nodes):
            levels.append(torch.tensor([k[level * BLOCK_TOKENS :] for k in keys]))
            above = nodes[level - 1] if level else {}
            parents.append(torch.tensor([above[k[: level * BLOCK_TOKENS]] for k in keys] if level else [], dtype=torch.long))  # fmt: skip
        prefix = SharedPrefix(levels, parents, of_row[:, :depth])
        tails = [s[n * BLOCK_TOKENS :] for s, n in zip(sequences, whole_blocks)]
        input_ids, attention_mask = pad_rows(tails, self.tokenizer.pad_token_id, left=True)
        labels = [[IGNORE_INDEX] * (len(p) - n * BLOCK_TOKENS) + list(o)
                  for p, o, n in zip(prompt_ids, output_ids, whole_blocks)]  # fmt: skip
        label_tensor, _ = pad_rows(labels, IGNORE_INDEX, left=True)
        offsets = torch.tensor(whole_blocks).unsqueeze(1) * BLOCK_TOKENS
        inputs = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "position_ids": offsets + position_ids(attention_mask),
        }
        return EncodedBatch(inputs, label_tensor, prefix=prefix)

    def output_logits(self, batch: EncodedBatch, model=None) -> tuple[torch.Tensor, torch.Tensor]:
        model = model if model is not None else self.model
        cache = self.frozen.serving(model)
        if cache is not None:
            return cache.run(model, batch, self._output_logits)
        return self._output_logits(batch, model)

    def _output_logits(
        self, batch: EncodedBatch, model, around_pass: PassContext | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`around_pass(level)`: a context around each forward pass, over the shared blocks
        at `level` or (level None) over the rows; where `FrozenLayerCache` hands its
        activations over."""
        around_pass = around_pass or (lambda level: contextlib.nullcontext())
        # Position t predicts token t+1. Only the last (longest output) positions before the last
        # predict an output token: logits (B x T x vocabulary) for the prompt would be wasted.
        output_width = longest_output_width(batch.labels)
        inputs = dict(batch.inputs)
        if batch.prefix is not None:
            inputs.update(self._run_shared_blocks(batch, model, around_pass))
        # The positions before each output token, the last position excluded (it predicts what
        # follows the output). Kept as indices, not a count: transformers slices the hidden
        # states by a count, and the output layer then runs on a strided view, at half the
        # speed on CPU.
        width = inputs["input_ids"].shape[1]
        keep = torch.arange(width - output_width - 1, width - 1, device=inputs["input_ids"].device)
        with around_pass(None):
            logits = model(**inputs, logits_to_keep=keep).logits
        return logits, batch.labels[:, -output_width:]

    def output_hidden_states(
        self, batch: EncodedBatch, model=None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        require_flat(batch)
        model = model if model is not None else self.model
        cache = self.frozen.serving(model)
        if cache is not None:
            return cache.run(model, batch, self._output_hidden_states)
        return self._output_hidden_states(batch, model)

    def _output_hidden_states(
        self, batch: EncodedBatch, model, around_pass: PassContext | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        width = longest_output_width(batch.labels)
        with around_pass(None) if around_pass else contextlib.nullcontext():
            outputs = model(**batch.inputs, output_hidden_states=True, logits_to_keep=1)
        # As in output_logits: the state one position before output token t predicts it.
        return outputs.hidden_states[-1][:, -width - 1 : -1], batch.labels[:, -width:]

    def all_position_logits(self, batch: EncodedBatch) -> tuple[torch.Tensor, torch.Tensor]:
        require_flat(batch)
        logits = self.model(**batch.inputs).logits
        return logits[:, :-1], batch.labels[:, 1:]

    def _run_shared_blocks(self, batch: EncodedBatch, model, around_pass: PassContext) -> dict:
        """Run the shared blocks, one pass per block position, each block after its own
        prefix's KV cache (indexed out inside the autograd graph, so gradients flow back to the
        one pass of a shared block). Returns the rows' inputs to read them by: each row's
        blocks' keys and values, left-padded to the longest, and the attention mask over them."""
        prefix = batch.prefix
        cache, after_level = None, []
        for level, (input_ids, parents) in enumerate(zip(prefix.levels, prefix.parents)):
            start = level * BLOCK_TOKENS
            if cache is not None:
                cache.batch_select_indices(parents)
            positions = torch.arange(start, start + BLOCK_TOKENS, device=input_ids.device)
            with around_pass(level):
                output = model(
                    input_ids=input_ids,
                    attention_mask=torch.ones(
                        input_ids.shape[0],
                        start + BLOCK_TOKENS,
                        dtype=torch.long,
                        device=input_ids.device,
                    ),  # fmt: skip
                    position_ids=positions.expand(input_ids.shape[0], -1),
                    use_cache=True,
                    logits_to_keep=1,
                    **({} if cache is None else {cache_argument(model): cache}),
                )
            cache = returned_cache(output)
            after_level.append(layer_tensors(cache))
        # Row r reads the cache after its last level: n_r whole blocks, left-padded to the most.
        rows, depth = prefix.of_row, prefix.of_row.shape[1]
        counts = (rows >= 0).sum(1)
        width = depth * BLOCK_TOKENS
        # The rows, grouped by their last level, follow one zero row (rows with no whole block)
        # in the merged cache; `index` puts each row back in its place. Computed once for all
        # layers.
        groups = [(level, (counts == level + 1).nonzero().squeeze(1)) for level in range(depth)]
        groups = [(level, chosen) for level, chosen in groups if len(chosen)]
        index = torch.zeros(len(rows), dtype=torch.long, device=rows.device)
        position = 1
        for _, chosen in groups:
            index[chosen] = position + torch.arange(len(chosen), device=rows.device)
            position += len(chosen)

        def merge(layer: int, kind: int) -> torch.Tensor:  # kind 0: keys, 1: values
            first = after_level[0][layer][kind]
            parts = [first.new_zeros(1, first.shape[1], width, first.shape[3])]
            for level, chosen in groups:
                part = after_level[level][layer][kind][rows[chosen, level]]
                parts.append(torch.nn.functional.pad(part, (0, 0, width - part.shape[2], 0)))
            return torch.cat(parts)[index]

        merged = [(merge(layer, 0), merge(layer, 1)) for layer in range(len(after_level[0]))]
        prefix_mask = (torch.arange(width, device=rows.device) >= width - counts.unsqueeze(1) * BLOCK_TOKENS).long()  # fmt: skip
        return {
            "attention_mask": torch.cat([prefix_mask, batch.inputs["attention_mask"]], 1),
            cache_argument(model): cache_of(merged),
            "use_cache": True,
        }

    def _generate_batch(
        self, inputs: dict[str, torch.Tensor], num_samples: int, options: dict
    ) -> torch.Tensor:
        """`num_return_sequences=n` would run each prompt through the model n times. Instead the
        prompt (all but its last token) is run once, its KV cache copied n times, and generation
        continues from it: the same tokens for the same seed, with 1/n of the prompt compute."""
        if num_samples == 1:
            if options["do_sample"] or options["max_new_tokens"] <= SEGMENT_TOKENS:
                return self.model.generate(**inputs, **options)
            return self._greedy_in_segments(inputs, options)
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        positions = position_ids(mask)
        # Only its KV cache is read: the logits of every prompt position (rows x length x
        # vocabulary, 1.9 GB for 64 prompts of 150 tokens on a 49k vocabulary) are not computed.
        prefill = self.model(
            input_ids=ids[:, :-1],
            attention_mask=mask[:, :-1],
            position_ids=positions[:, :-1],
            use_cache=True,
            logits_to_keep=1,
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

    def _greedy_in_segments(self, inputs: dict[str, torch.Tensor], options: dict) -> torch.Tensor:
        """Greedy decoding, `SEGMENT_TOKENS` new tokens per `generate` call; between calls the
        rows that ended leave the batch, their rows of the KV cache dropped. One call keeps
        every row computing until the longest answer ends: on IFEval's prompts (answers of a
        few to 512 tokens) about half of that work is on rows already ended. Each call
        continues from the cache (the last token only runs), so the tokens are one call's."""
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        ends = torch.tensor(options["eos_token_id"], device=ids.device).reshape(-1)
        segment_options = {k: v for k, v in options.items() if k != "max_new_tokens"}
        rows = list(range(len(ids)))  # the original row of each row still decoding
        pieces: list[list[torch.Tensor]] = [[] for _ in rows]
        sequences, cache, left = ids, None, options["max_new_tokens"]
        while rows and left > 0:
            step = min(SEGMENT_TOKENS, left)
            cached = {} if cache is None else {cache_argument(self.model): cache}
            out = self.model.generate(input_ids=sequences, attention_mask=mask, max_new_tokens=step,
                                      return_dict_in_generate=True, **cached, **segment_options)  # fmt: skip
            new = out.sequences[:, sequences.shape[1] :]
            left -= new.shape[1]
            for row, tokens in zip(rows, new, strict=True):
                pieces[row].append(tokens)
            going = (~torch.isin(new, ends).any(1)).nonzero().squeeze(1)
            if len(going) == 0:
                break
            cache = returned_cache(out)
            if not hasattr(cache, "batch_select_indices"):  # a cache whose rows cannot be dropped
                return self.model.generate(**inputs, **options)
            cache.batch_select_indices(going)
            mask = torch.cat([mask, torch.ones_like(new)], 1)[going]
            sequences = out.sequences[going]
            rows = [rows[i] for i in going.tolist()]
        outputs = [torch.cat(piece) for piece in pieces]
        width = max(len(o) for o in outputs)
        padded = torch.full((len(outputs), width), options["pad_token_id"], dtype=ids.dtype, device=ids.device)  # fmt: skip
        for row, output in enumerate(outputs):
            padded[row, : len(output)] = output
        return torch.cat([ids, padded], 1)

    def new_tokens(self, generated: torch.Tensor, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return generated[:, inputs["input_ids"].shape[1] :]
