"""The prompt side of a policy: how (prompt, output) text becomes token ids for one tokenizer.

Prompt formats: "plain" feeds the prompt text as it is (the paper's protocol); "chat" puts it in
the user turn of the tokenizer's chat template, the output is the assistant's turn and ends with
the template's end-of-turn token; "auto" is chat when a template exists (decoder-only models).

    fmt = PromptFormat(tokenizer, "auto", is_encoder_decoder=False, max_positions=2048)
    fmt.prompt_ids(["What is 2 + 2?"])      # rendered, cut from the start when too long
    fmt.output_ids(["4"])                   # ... followed by the end token

Nothing here touches a model: the model side (`hir.models.policy`) turns these ids into tensors.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import torch

from hir.errors import HIRError

PROMPT_FORMATS = ("auto", "chat", "plain")


class PromptFormat:
    def __init__(
        self,
        tokenizer,
        prompt_format: str = "auto",
        *,
        is_encoder_decoder: bool,
        max_positions: int | None,
        plain_completion_prefix: str = "",
        max_prompt_tokens: int = 1024,
        max_output_tokens: int = 256,
    ) -> None:
        """`max_positions`: how many positions a prompt and its output share (None: they are
        separate sequences, as in encoder-decoder models). `plain_completion_prefix`: text put
        before an output that follows a plain prompt in one sequence ("A: (B)")."""
        if tokenizer.eos_token_id is None:
            raise HIRError("the tokenizer has no EOS token; set tokenizer.eos_token before use")
        if tokenizer.pad_token_id is None:
            # GPT-2 style tokenizers have no pad token; padding is masked out anyway.
            tokenizer.pad_token = tokenizer.eos_token
        self.tokenizer = tokenizer
        self.chat = uses_chat(prompt_format, tokenizer, is_encoder_decoder)
        # The token that ends an output: the end-of-turn token under a chat template.
        self.end_token_id = end_of_turn_id(tokenizer) if self.chat else tokenizer.eos_token_id
        self.completion_prefix = "" if self.chat else plain_completion_prefix
        self.max_positions = max_positions
        self.max_prompt_tokens = max_prompt_tokens
        self.max_output_tokens = max_output_tokens
        self._warned_cut = False

    @property
    def name(self) -> str:
        """ "chat" or "plain": the format that was settled on."""
        return "chat" if self.chat else "plain"

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
        `max_prompt_tokens` only; `fit_to_output` then cuts it to fit beside its output)."""
        texts = self.render_prompts(prompts)
        if contexts is not None:
            texts = [t + c for t, c in zip(texts, contexts, strict=True)]
        # A rendered chat prompt already holds its special tokens (BOS included).
        ids = self.tokenizer(texts, add_special_tokens=not self.chat)["input_ids"]
        limit = self.max_prompt_tokens if reserve is None else self.prompt_limit(reserve)
        return [self.cut(row, limit) for row in ids]

    def fit_to_outputs(
        self, prompt_ids: Sequence[Sequence[int]], output_ids: Sequence[Sequence[int]]
    ) -> list[list[int]]:
        """Each prompt cut to leave room for its output, where the two share the positions."""
        if self.max_positions is None:
            return [list(p) for p in prompt_ids]
        return [self.cut(list(p), self.prompt_limit(len(o))) for p, o in zip(prompt_ids, output_ids)]  # fmt: skip

    def cut(self, prompt: list[int], limit: int) -> list[int]:
        """The last `limit` tokens: the query and "A:" matter more than the start."""
        if len(prompt) > limit and not self._warned_cut:
            self._warned_cut = True
            print(f"hir: a prompt of {len(prompt)} tokens is cut to its last {limit}, to leave room for the output", file=sys.stderr)  # fmt: skip
        return prompt[-limit:]

    def prompt_limit(self, reserve: int) -> int:
        """The most prompt tokens the model reads with `reserve` positions left for the output."""
        if self.max_positions is None:
            return self.max_prompt_tokens
        if reserve >= self.max_positions:
            raise HIRError(
                f"{reserve} output tokens leave no room for the prompt in this model's "
                f"{self.max_positions} positions: lower --max_new_tokens"
            )
        return min(self.max_prompt_tokens, self.max_positions - reserve)

    def output_ids(self, outputs: list[str]) -> list[list[int]]:
        texts = [self.completion_prefix + o for o in outputs]
        ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [row[: self.max_output_tokens - 1] + [self.end_token_id] for row in ids]

    def decode(self, token_ids: torch.Tensor) -> list[str]:
        return [t.strip() for t in self.tokenizer.batch_decode(token_ids, skip_special_tokens=True)]

    def until_end(self, new_tokens: torch.Tensor) -> list[tuple[int, ...]]:
        """Each row up to and including its first end token; after it, generate only pads."""
        end = self.end_token_id
        return [tuple(row[: row.index(end) + 1] if end in row else row) for row in new_tokens.tolist()]  # fmt: skip


def uses_chat(prompt_format: str, tokenizer, is_encoder_decoder: bool) -> bool:
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
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "a"}, {"role": "assistant", "content": marker}],
            tokenize=False,
        )
    except Exception as exc:  # noqa: BLE001 - a template's own raise_exception, or a broken one
        said = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise HIRError(
            f"the model's chat template fails on a user turn and an assistant turn ({said}): fix "
            "the tokenizer's chat_template, or pass --prompt_format plain"
        ) from exc
    after = text[text.rindex(marker) + len(marker) :]
    ids = tokenizer(after, add_special_tokens=False)["input_ids"]
    if ids and ids[0] in tokenizer.all_special_ids:
        return ids[0]
    return tokenizer.eos_token_id
