"""Activations below the first trained layer, computed once per block of tokens.

When only the last k layers of a decoder-only model are trained (`--train_last_layers k`, with
or without LoRA), the embeddings and the layers below never change: what enters the first
trained layer at a position is a function of the tokens up to it. `FrozenLayerCache` keeps it,
keyed by those tokens, so that the frozen layers run once per prompt (and once per sampled
output) for the whole run instead of in every epoch's forward pass. Training then runs the
frozen layers as stand-ins that hand over the kept activations, and only the trained layers
compute.

    (prompt, output) -- frozen layers, once per run --> kept --> trained layers, every step

Activations are kept in blocks of BLOCK_TOKENS tokens cut at fixed positions (0, 16, 32, ...),
each keyed by the tokens up to its end, so that a prefix several sequences share (a query's
prompt under both instructions, all of its samples, a sub-output's head) runs through the frozen
layers once. Missing blocks run in one batched pass per block position, each after the frozen
layers' KV cache of its own prefix. Because the cuts are fixed by the tokens and every row of a
pass has the same shape, a block's numbers do not depend on which batch first needed it: a
resumed run, whose cache starts empty, computes the same ones. A batch that runs its prompts
once (shared prompts) takes the prompt's positions from its rows' blocks. A sample trained with
the head of its output read as context (HIR's sub-output) is the same token sequence, cut
elsewhere: it is served from the same blocks.

A copy of the model whose frozen layers stay frozen (PPO's value model, a copy of the starting
policy) computes the same activations below its first trained layer: `twin` gives it a cache of
its own layers that is handed this one's kept activations, so that the frozen layers run once
for both networks and the copy's passes run its trained layers only.

The stand-ins imitate what a transformers decoder layer does (return the hidden states, grow
the KV cache); the first use checks the result against the ordinary forward pass, and on any
difference the cache switches itself off and says so.
"""

from __future__ import annotations

import sys
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from transformers import Cache, DynamicCache

from hir.models.speed.blocks import BLOCK_TOKENS, block_ends, block_start
from hir.models.speed.kv_cache import cache_argument

# The first check compares the outputs (logits or hidden states) of the cached and the ordinary
# forward pass.
CHECK_TOLERANCE = 1e-3


class _StopForward(Exception):
    """Raised by a hook once the last frozen layer has run: nothing above it is needed."""


class _HandOver(torch.nn.Module):
    """Stands in for frozen layer `index`: grows the KV cache by the query length as the real
    layer would (the mask is sized from it; nothing reads the values), and returns either its
    input unchanged or, for the last frozen layer, the kept activations."""

    def __init__(self, index: int, output: torch.Tensor | None) -> None:
        super().__init__()
        self.index = index
        self.output = output

    def forward(self, hidden_states, *args, **kwargs):
        # (GPT-2 passes the cache by position, Llama by name.)
        cache = next((a for a in (*args, *kwargs.values()) if isinstance(a, Cache)), None)
        if cache is not None:
            placeholder = hidden_states.new_zeros(hidden_states.shape[0], 1, hidden_states.shape[1], 1)  # fmt: skip
            cache.update(placeholder, placeholder, self.index)
        return hidden_states if self.output is None else self.output


class FrozenLayerCache:
    """Kept inputs of layer `first_trained` of `layers`, the transformer blocks of `model`."""

    def __init__(self, model: torch.nn.Module, layers: torch.nn.ModuleList, first_trained: int,
                 max_megabytes: int):  # fmt: skip
        if not 0 < first_trained < len(layers):
            raise ValueError(f"first trained layer {first_trained} of {len(layers)}")
        self.model = model  # the one model whose activations these are
        self.layers = layers
        self.first_trained = first_trained
        self.max_bytes = max_megabytes * 2**20
        self.entries: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.enabled = True
        self.checked: set[str] = set()  # "flat", "shared": forms already checked
        # A twin's (see `twin`): the cache whose kept activations it reads.
        self.source: FrozenLayerCache | None = None

    def twin(self, model: torch.nn.Module, layers: torch.nn.ModuleList) -> FrozenLayerCache:
        """A cache for `model`, a copy of this one's model whose layers below `first_trained`
        are frozen too (`layers`, its transformer blocks): its passes are handed the activations
        this cache keeps, computed once for both. Its first use checks them against its own
        ordinary pass, as any cache's does."""
        twin = FrozenLayerCache(model, layers, self.first_trained, 0)
        twin.source = self
        return twin

    def clear(self) -> None:
        """Forget every kept activation (the frozen weights changed, e.g. loaded anew)."""
        self.entries.clear()
        self.bytes = 0

    # -- the forward pass ---------------------------------------------------------------------

    def run(self, model, batch, ordinary: Callable) -> tuple[torch.Tensor, torch.Tensor]:
        """`ordinary(batch, model)`'s (outputs, labels) (logits or the last hidden states),
        with the frozen layers' work kept.
        `ordinary` takes `around_pass`, a context around each of its forward passes (over the
        shared prompt blocks at a level, or over the rows), which is where the kept
        activations are handed over. The first call of each form (flat, shared prompts) checks
        that both ways agree; where they do not, `ordinary` alone is used from then on."""
        form = "shared" if batch.shares_prompts else "flat"
        if self.enabled and form not in self.checked:
            self.checked.add(form)
            self._check(model, batch, ordinary)
        if not self.enabled:
            return ordinary(batch, model)
        return self._cached(model, batch, ordinary)

    def precompute(self, inputs: dict[str, torch.Tensor], chunk: int = 64) -> None:
        """Run the frozen layers for the rows of `inputs` (a flat batch's) ahead of training:
        many at once, their block passes are larger and fewer than batch by batch. `chunk`
        bounds the KV cache held."""
        if not self.enabled:
            return
        sequences = _rows(inputs["input_ids"], inputs["attention_mask"])
        distinct = sorted(set(sequences))  # neighbours share prefixes
        with torch.no_grad():
            for begin in range(0, len(distinct), chunk):
                self._kept(distinct[begin : begin + chunk])

    def _cached(self, model, batch, ordinary: Callable):
        rows = _rows(batch.inputs["input_ids"], batch.inputs["attention_mask"])
        width = batch.inputs["input_ids"].shape[1]
        if batch.prefix is None:
            hidden = _pad_left(self._kept(rows), width)
            return ordinary(batch, model, around_pass=lambda level: self._handing_over(hidden))
        # A row is its shared blocks, then its own tokens: its kept activations are cut the same.
        blocks = [level.tolist() for level in batch.prefix.levels]
        of_row = batch.prefix.of_row.tolist()
        counts = [sum(node >= 0 for node in nodes) for nodes in of_row]
        sequences = [tuple(t for level in range(count) for t in blocks[level][nodes[level]]) + row
                     for nodes, count, row in zip(of_row, counts, rows)]  # fmt: skip
        kept = self._kept(sequences)
        level_hidden = []
        for level, level_blocks in enumerate(blocks):
            row_of_node = {}
            for row, nodes in enumerate(of_row):
                row_of_node.setdefault(nodes[level], row)
            start = level * BLOCK_TOKENS
            level_hidden.append(torch.stack([kept[row_of_node[node]][start : start + BLOCK_TOKENS]
                                             for node in range(len(level_blocks))]))  # fmt: skip
        row_hidden = _pad_left([h[c * BLOCK_TOKENS :] for h, c in zip(kept, counts)], width)
        return ordinary(batch, model, around_pass=lambda level: self._handing_over(
            row_hidden if level is None else level_hidden[level]))  # fmt: skip

    @contextmanager
    def _handing_over(self, hidden: torch.Tensor) -> Iterator[None]:
        originals = [self.layers[i] for i in range(self.first_trained)]
        last = self.first_trained - 1
        try:
            for i in range(self.first_trained):
                self.layers[i] = _HandOver(i, hidden if i == last else None)
            yield
        finally:
            for i, layer in enumerate(originals):
                self.layers[i] = layer

    # -- kept activations ---------------------------------------------------------------------

    def _kept(self, sequences: list[tuple[int, ...]]) -> list[torch.Tensor]:
        """The last frozen layer's output [length, hidden] for each token sequence, assembled
        from its blocks (`block_ends`). Missing blocks run on the cache's model itself, never
        through a DDP wrapper: each pass of one is a collective step, and processes miss
        different blocks."""
        if self.source is not None:  # a twin: its source keeps (and computes) them for both
            return self.source._kept(sequences)
        found: dict[tuple, torch.Tensor] = {}
        needed: set[tuple] = set()  # blocks to run: the missing ones and the blocks before them
        for sequence in dict.fromkeys(sequences):
            keys = [sequence[:end] for end in block_ends(len(sequence))]
            missing = [i for i, k in enumerate(keys) if k not in self.entries]
            if missing:
                self.misses += 1
                needed.update(keys[: missing[-1] + 1])
            else:
                self.hits += 1
            for key in keys:
                if key in self.entries:
                    self.entries.move_to_end(key)
                    found[key] = self.entries[key]
        if needed:
            for key, hidden in self._run_blocks(needed).items():
                if key not in found:
                    found[key] = hidden
                    self._keep(key, hidden)
        return [
            torch.cat([found[sequence[:end]] for end in block_ends(len(sequence))])
            for sequence in sequences
        ]

    def _keep(self, key: tuple, value: torch.Tensor) -> None:
        self.entries[key] = value
        self.bytes += value.numel() * value.element_size()
        while self.bytes > self.max_bytes and len(self.entries) > 1:
            _, old = self.entries.popitem(last=False)
            self.bytes -= old.numel() * old.element_size()

    @torch.no_grad()
    def _run_blocks(self, blocks: set[tuple]) -> dict[tuple, torch.Tensor]:
        """The last frozen layer's output [block length, hidden] for each block (keyed by the
        tokens up to its end; every block before it is in `blocks` too). One forward pass per
        block position: the blocks that start at token j * BLOCK_TOKENS run together, each after
        the frozen layers' KV cache of its own prefix, copied out from the pass before. Every
        row of a pass has the same shape (a last, shorter block is padded at its end, where no
        real token reads it), so a block's numbers do not depend on the other rows."""
        model = self.model
        device = next(model.parameters()).device
        by_start: dict[int, list[tuple]] = {}
        for key in sorted(blocks):
            by_start.setdefault(block_start(key), []).append(key)
        cache, previous, out = DynamicCache(), [], {}
        for start in sorted(by_start):
            keys = by_start[start]
            if previous:  # each row continues its own prefix's cache
                row_of = {key: row for row, key in enumerate(previous)}
                cache.batch_select_indices(torch.tensor([row_of[k[:start]] for k in keys], device=device))  # fmt: skip
            input_ids = torch.zeros(len(keys), BLOCK_TOKENS, dtype=torch.long, device=device)
            attention_mask = torch.ones(len(keys), start + BLOCK_TOKENS, dtype=torch.long, device=device)  # fmt: skip
            for row, key in enumerate(keys):
                input_ids[row, : len(key) - start] = torch.tensor(key[start:])
                attention_mask[row, len(key) :] = 0
            positions = torch.arange(start, start + BLOCK_TOKENS, device=device)
            hidden = self._frozen_output(
                model, input_ids=input_ids, attention_mask=attention_mask, use_cache=True,
                position_ids=positions.expand(len(keys), -1), **{cache_argument(model): cache},
            )  # fmt: skip
            out.update({key: hidden[row, : len(key) - start] for row, key in enumerate(keys)})
            previous = keys
        return out

    def _frozen_output(self, model, **inputs) -> torch.Tensor:
        """The output of the last frozen layer for `model(**inputs)`; the layers above do not
        run."""
        captured = []

        def capture(module, args, output):
            captured.append(output[0] if isinstance(output, tuple) else output)
            raise _StopForward

        handle = self.layers[self.first_trained - 1].register_forward_hook(capture)
        try:
            model(**inputs)
        except _StopForward:
            pass
        finally:
            handle.remove()
        return captured[0].detach()

    # -- the first-use check ------------------------------------------------------------------

    def _check(self, model, batch, ordinary: Callable) -> None:
        """Compare with the ordinary forward pass once; switch off on any difference."""
        try:
            with torch.no_grad():
                expected, labels = ordinary(batch, model)
                got, _ = self._cached(model, batch, ordinary)
            real = (labels != -100).unsqueeze(-1)
            difference = ((got - expected).abs() * real).max().item()
            problem = None if difference <= CHECK_TOLERANCE else f"outputs differ by {difference:.2g}"  # fmt: skip
        except Exception as exc:  # an architecture whose layers the stand-ins do not fit
            problem = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
        if problem:
            self.enabled = False
            self.clear()
            print(f"hir: not caching the frozen layers' activations for {type(model).__name__} ({problem}); training runs every layer", file=sys.stderr)  # fmt: skip


class FrozenLayers:
    """A policy's frozen-layer cache (None when every layer trains, or the cache is off) and its
    twins: caches for copies of its model whose frozen layers stay frozen (PPO's value model, or
    its reference), which read the activations the policy's cache keeps. Each twin lives as long
    as the copy that holds it."""

    def __init__(self, cache: FrozenLayerCache | None = None) -> None:
        self.cache = cache
        self.twins: weakref.WeakSet[FrozenLayerCache] = weakref.WeakSet()

    @property
    def enabled(self) -> bool:
        return self.cache is not None and self.cache.enabled

    def share_with(self, copy: torch.nn.Module, layers: list[torch.nn.Module]) -> FrozenLayerCache | None:  # fmt: skip
        """A twin that serves `copy`'s passes (`layers`: its layer stack); None without a cache."""
        if not self.enabled:
            return None
        twin = self.cache.twin(copy, layers)
        self.twins.add(twin)
        return twin

    def serving(self, model) -> FrozenLayerCache | None:
        """The cache that serves `model`'s passes: the policy's own for its model, a twin's for
        a copy that shares the frozen layers, else None. Also through DDP's wrapper: the pass
        still runs through it, so that it synchronizes the trained layers' gradients."""
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        caches = [self.cache, *self.twins] if self.cache else []
        return next((cache for cache in caches if cache.model is model), None)

    def precompute(self, inputs: dict[str, torch.Tensor]) -> None:
        """Run the frozen layers for these inputs now, all together (no-op without the cache)."""
        if self.enabled:
            self.cache.precompute(inputs)

    def weights_changed(self) -> None:
        """The model's weights were loaded anew: what was kept, and each twin's check, is stale."""
        if self.cache is not None:
            self.cache.clear()
        for twin in self.twins:  # a copy's frozen layers may differ now: check again
            twin.checked.clear()


def _rows(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[tuple[int, ...]]:
    """Each row's real tokens (padding dropped)."""
    return [tuple(ids[mask.bool()].tolist()) for ids, mask in zip(input_ids, attention_mask)]


def _pad_left(rows: list[torch.Tensor], length: int) -> torch.Tensor:
    out = rows[0].new_zeros(len(rows), length, rows[0].shape[-1])
    for b, row in enumerate(rows):
        out[b, length - row.shape[0] :] = row
    return out
