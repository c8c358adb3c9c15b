"""Token blocks cut at fixed positions: how a decoder-only model runs a prefix that several rows
share once (`CausalPolicy`'s shared-prefix pass, `FrozenLayerCache`).

A sequence is cut after every BLOCK_TOKENS tokens, and a block is known by the tokens up to its
end. Two sequences that share a prefix share its whole blocks, whatever batch they come in, and
a block's place does not depend on where a prompt ends: the cuts are fixed by the tokens."""

from __future__ import annotations

BLOCK_TOKENS = 16


def block_ends(length: int) -> list[int]:
    """Where a sequence of `length` tokens is cut: after every BLOCK_TOKENS tokens, and at its
    end."""
    return [*range(BLOCK_TOKENS, length, BLOCK_TOKENS), length]


def block_start(key: tuple[int, ...]) -> int:
    """Where the block known by `key` (the tokens up to its end) starts."""
    return (len(key) - 1) // BLOCK_TOKENS * BLOCK_TOKENS
