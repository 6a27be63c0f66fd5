"""A hand-rolled constrained decoder for the flat answer format of ``extraction.prompt``.

Why not ``generate`` + a JSON-schema logits processor: most of the ~390 answer tokens are keys and
punctuation the schema forces, and ``generate`` spends a decode step on each. Here the answer is a
fixed ``answer_layout`` (forced text, a slot, forced text, ...), so:

- each forced stretch (``,"LVEDV":``) is fed in the same forward pass as the token that ended the
  previous value: the only decode steps left are the value tokens themselves;
- no forward pass where only one continuation is possible (``null`` must be followed by the
  separator; a category is settled once its first token picks it);
- logits only for the tokens a slot can use (digits, '.', 'null', separators, category tokens),
  not the 49k vocabulary;
- the n samples are a tree over one shared prompt: samples that made the same choices so far are
  one branch, computed once; a branch splits where its samples draw different tokens. All
  branches live in one batch-1 KV cache, each token seeing the prompt and its own ancestors (a 4D
  mask and per-branch positions), so the prompt's keys and values are stored and read once;
- drafts (speculation checked in the same pass): after the tokens a branch must feed, a small tree
  of likely continuations is fed too: a guessed value for this field and the next ones (the
  caller's hints: in the local backend the rules backend's reading) with their forced keys, the continuations of
  report numbers that start like the number being written, and a repeat of the previous value.
  The logits at every drafted position come out of the same pass; walking the draft, each sample
  draws its token from the logits there and keeps going while the draws match the draft. A good
  draft saves whole forward passes; a wrong one costs a little compute, so the draft size follows
  how many drafted tokens were taken lately;
- the KV cache writes into a preallocated buffer (no copy of the whole cache per step), and
  attention groups the query heads that share a key/value head instead of copying keys and values
  per head (SmolLM2 has 9 query heads on 3 KV heads).

Exact: every choice is drawn from the model's own logits at that position (greedy or sampling with
temperature/top-p; each sample has its own random stream, used in its own token order), so results
equal plain step-by-step decoding and do not depend on the schedule; merging and drafting only
decide what is computed when. The number grammar is the training target's (``prompt.format_number``): JSON
numbers without sign or exponent (every field is non-negative), at most 6 integer and 2 decimal
digits, so a slot always ends. The caller still validates the text with ``parse_model_output``.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import inspect
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from transformers.cache_utils import Cache, DynamicLayer
from transformers.modeling_utils import AttentionInterface

from extraction.prompt import Forced, Piece, Slot

# JSON numbers as the training target writes them (``prompt.format_number``): no sign (every field
# is non-negative), no exponent, at most 2 decimals (values are rounded to 2), at most 6 digits.
_NUMBER_DONE = re.compile(r"null|(?:0|[1-9]\d{0,5})(?:\.\d{1,2})?")
_NUMBER_PREFIX = re.compile(r"n|nu|nul|null|(?:0|[1-9]\d{0,5})(?:\.\d{0,2})?")
_VALUE_CHARS = set("0123456789.nul")
ATTENTION = "cmrx_grouped_sdpa"
# Drafted tokens per branch and forward pass: a pass reads every weight once whatever its width (on CPU
# a 30-token pass costs ~1.6x a 5-token one), so with drafts that are mostly right (the rules
# backend's reading, see local.draft_hints) a wide draft verifies several fields per pass. Shipped
# adapter, 4 dev reports, 1 thread: budget 8 -> 68 passes and 26.9 CPU s a report, 24 -> 43 and
# 21.2, 96 -> 33.5 and 18.0, about the same tokens fed (the budget follows what was taken lately).
DRAFT_BUDGET = 96  # most drafted tokens per branch and pass
MIN_DRAFT = 8  # fewest


def number_prefix_ok(text: str) -> bool:
    return text == "" or _NUMBER_PREFIX.fullmatch(text) is not None


def number_done(text: str) -> bool:
    return _NUMBER_DONE.fullmatch(text) is not None


def number_can_grow(text: str) -> bool:
    """Could any character still extend this value (otherwise the separator is forced)?"""
    return any(number_prefix_ok(text + c) for c in "0123456789.nul")


# ---- attention and KV cache ------------------------------------------------------------------


@dataclass
class SplitPlan:
    """How the queries of one decode pass attend, so that no query computes scores for keys it
    cannot see (other branches' tokens, rejected drafts): every query sees the prompt, keys
    [0, shared); then each group of queries (one branch: rows [start, end) of the pass) sees only
    the key slots in ``keys`` under the additive ``mask`` ([1, 1, rep * rows, len(keys)], tiled
    over the query heads that share a KV head). The two parts are merged by their log-sum-exps."""

    shared: int
    queries: int
    groups: list[tuple[int, int, torch.Tensor, torch.Tensor]]
    causal: bool = False  # prefill: the queries are keys [shared, end), causal among themselves, no mask built


_SPLIT: contextvars.ContextVar[SplitPlan | None] = contextvars.ContextVar("cmrx_split_plan", default=None)
_FLASH_CPU = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


def split_sdpa(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, plan: SplitPlan,
               scaling: float | None) -> torch.Tensor:
    """Attention of a decode pass by ``plan``: [b, h, q, d] in, [b, q, h, d] out."""
    b, h, q, d = query.shape
    kv_heads = key.shape[1]
    rep = h // kv_heads
    scale = scaling if scaling is not None else 1.0 / math.sqrt(d)
    packed = query.reshape(b, kv_heads, rep, q, d)
    if plan.causal:
        return _prefill_sdpa(query, key, value, plan.shared, scale)
    shared_out, shared_lse = _FLASH_CPU(packed.reshape(b, kv_heads, rep * q, d), key[:, :, : plan.shared],
                                        value[:, :, : plan.shared], 0.0, False, attn_mask=None, scale=scale)
    shared_out = shared_out.reshape(b, kv_heads, rep, q, d)
    shared_lse = shared_lse.reshape(b, kv_heads, rep, q)
    out = torch.empty(b, kv_heads, rep, q, d, dtype=query.dtype, device=query.device)
    for start, end, keys, mask in plan.groups:
        rows = end - start
        own_out, own_lse = _FLASH_CPU(packed[:, :, :, start:end].reshape(b, kv_heads, rep * rows, d),
                                      key.index_select(2, keys), value.index_select(2, keys), 0.0, False,
                                      attn_mask=mask, scale=scale)
        own_out = own_out.reshape(b, kv_heads, rep, rows, d)
        own_lse = own_lse.reshape(b, kv_heads, rep, rows)
        first_lse = shared_lse[..., start:end]
        top = torch.maximum(first_lse, own_lse)
        w1, w2 = torch.exp(first_lse - top), torch.exp(own_lse - top)
        total = w1 + w2
        out[:, :, :, start:end] = (shared_out[:, :, :, start:end] * (w1 / total)[..., None]
                                   + own_out * (w2 / total)[..., None])
    return out.reshape(b, h, q, d).transpose(1, 2).contiguous()


def _prefill_sdpa(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, past: int,
                  scale: float) -> torch.Tensor:
    """Prefill after ``past`` cached keys without an explicit [q, past + q] mask (which sends SDPA
    down a slower masked path): the new tokens attend to the cache unmasked and to themselves
    with the flash kernel's own causal mask; the two parts are merged by their log-sum-exps."""
    b, h, q, d = query.shape
    rep = h // key.shape[1]
    own_k, own_v = key[:, :, past:].repeat_interleave(rep, 1), value[:, :, past:].repeat_interleave(rep, 1)
    out, lse = _FLASH_CPU(query, own_k, own_v, 0.0, True, attn_mask=None, scale=scale)
    if past:
        old_out, old_lse = _FLASH_CPU(query.reshape(b, key.shape[1], rep * q, d), key[:, :, :past], value[:, :, :past],
                                      0.0, False, attn_mask=None, scale=scale)
        old_out, old_lse = old_out.reshape(b, h, q, d), old_lse.reshape(b, h, q)
        top = torch.maximum(lse, old_lse)
        w1, w2 = torch.exp(lse - top), torch.exp(old_lse - top)
        out = (out * w1[..., None] + old_out * w2[..., None]) / (w1 + w2)[..., None]
    return out.transpose(1, 2).contiguous()


def grouped_sdpa(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                 attention_mask: torch.Tensor | None, scaling: float | None = None, **kwargs) -> tuple[torch.Tensor, None]:
    """SDPA for grouped-query attention without copying keys/values per query head.

    For a few query tokens, the query heads that share a KV head become extra query rows of that
    head ([b, h, q, d] -> [b, kv_heads, rep * q, d]) and the mask is tiled to match."""
    b, h, q, d = query.shape
    plan = _SPLIT.get()
    if plan is not None and plan.queries == q and query.device.type == "cpu" and query.dtype == torch.float32:
        return split_sdpa(query, key, value, plan, scaling), None
    kv_heads, kv_len = key.shape[1], key.shape[2]
    rep = h // kv_heads
    mask = attention_mask
    if mask is None and q > 1:  # causal, aligned to the end of the keys
        mask = torch.arange(kv_len, device=query.device)[None, :] <= (kv_len - q + torch.arange(q, device=query.device))[:, None]
        mask = mask[None, None]
    if rep > 1 and q <= 64:
        packed = query.reshape(b, kv_heads, rep * q, d)
        tiled = None if mask is None else mask.expand(b, -1, -1, -1).repeat(1, 1, rep, 1)
        out = F.scaled_dot_product_attention(packed, key, value, attn_mask=tiled, scale=scaling).reshape(b, h, q, d)
    else:
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=scaling, enable_gqa=rep > 1)
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(ATTENTION, grouped_sdpa)


class _BufferLayer(DynamicLayer):
    """A DynamicLayer that writes into a preallocated buffer instead of concatenating, so a decode
    step costs its own tokens, not a copy of the whole cache."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device = key_states.device
        b, h, _, d = key_states.shape
        self._k = key_states.new_zeros(b, h, self.capacity, d)
        self._v = value_states.new_zeros(b, h, self.capacity, value_states.shape[-1])
        self.keys, self.values = self._k[:, :, :0], self._v[:, :, :0]
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        start = self.keys.shape[-2]
        end = start + key_states.shape[-2]
        if end > self._k.shape[-2]:
            self._grow(end)
        self._k[:, :, start:end] = key_states
        self._v[:, :, start:end] = value_states
        self.keys, self.values = self._k[:, :, :end], self._v[:, :, :end]
        return self.keys, self.values

    def _grow(self, needed: int) -> None:
        size = max(needed, 2 * self._k.shape[-2])
        for name in ("_k", "_v"):
            old = getattr(self, name)
            new = old.new_zeros(*old.shape[:2], size, old.shape[-1])
            new[:, :, : old.shape[-2]] = old
            setattr(self, name, new)
        self.capacity = size

    def copy_with_room(self, extra: int) -> _BufferLayer:
        length = self.keys.shape[-2]
        layer = _BufferLayer(length + extra)
        layer.device = self.device
        layer._k = self._k.new_zeros(*self._k.shape[:2], length + extra, self._k.shape[-1])
        layer._v = self._v.new_zeros(*self._v.shape[:2], length + extra, self._v.shape[-1])
        layer._k[:, :, :length] = self.keys
        layer._v[:, :, :length] = self.values
        layer.keys, layer.values = layer._k[:, :, :length], layer._v[:, :, :length]
        layer.is_initialized = True
        return layer


@dataclass
class PromptState:
    """A prefilled prompt: its KV cache (one row), its length and its last hidden state."""

    cache: Cache
    length: int
    hidden: torch.Tensor

    def fork(self, room: int = 1024) -> PromptState:
        """An independent copy with ``room`` free slots (the cached prefix is reused, never grown)."""
        layers = [layer.copy_with_room(room) for layer in self.cache.layers]
        return PromptState(Cache(layers=layers), self.length, self.hidden)


# ---- the answer layout ------------------------------------------------------------------------


@dataclass
class CompiledLayout:
    """Token ids of a layout: ``lead[i]`` is forced before slot i; ``lead[-1]`` closes the answer."""

    lead: list[list[int]]
    slots: list[Slot]
    options: list[list[list[int]]]  # per slot: token ids of each choice (empty for numbers)


@dataclass
class _Branch:
    """Samples that made the same choices so far; computed once, split when their draws differ."""

    samples: list[int]
    row: int  # its row of the visibility table
    position: int  # logical position of its next token
    slot: int = 0
    text: str = ""  # characters of the current number slot so far
    last: str = ""  # the previous number slot's value
    chosen: list[int] = field(default_factory=list)  # tokens of the current choice slot so far
    out: list[int] = field(default_factory=list)  # every answer token, forced ones included
    pending: list[int] = field(default_factory=list)  # tokens to feed in the next forward pass
    decisions: list[tuple[int, float]] = field(default_factory=list)
    done: bool = False


@dataclass
class _Feed:
    """One branch's share of a forward pass: its pending chain, then a draft tree after it."""

    branch: _Branch
    chain: list[int]
    nodes: list[tuple[int, int]]  # (token, parent node index or -1 for the end of the chain)
    root: int = 0  # query index (in the step) of the chain's last token
    first_node: int = 0  # query index of nodes[0]
    slot0: int = 0  # cache slot of query index 0


@dataclass
class Decoded:
    text: str
    token_ids: list[int]  # the answer's tokens, forced ones included
    decisions: list[tuple[int, float]]  # (index in token_ids, raw logit) of every token the model chose


class ForcedDecoder:
    """Decodes ``answer_layout``-shaped answers with a causal LM (a transformers model, maybe peft)."""

    def __init__(self, causal_lm, tokenizer) -> None:
        self.lm = causal_lm
        self.body = causal_lm.get_decoder()  # the transformer stack without the LM head
        # transformers renamed past_key_values to cache (5.x); use whichever this version takes
        self._cache_kw = "cache" if "cache" in inspect.signature(self.body.forward).parameters else "past_key_values"
        self.tokenizer = tokenizer
        self.device = causal_lm.device
        pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        special = set(tokenizer.all_special_ids)
        self.value_ids = [i for i, p in enumerate(pieces) if p and i not in special and set(p) <= _VALUE_CHARS]
        self.token_text = {i: pieces[i] for i in self.value_ids}
        head = causal_lm.get_output_embeddings()
        self._head_weight, self._head_bias = head.weight, getattr(head, "bias", None)
        self._columns: dict[int, int] = {}
        self._small_ids: list[int] = []
        self._add_columns(self.value_ids)
        self._compiled: dict[tuple[Piece, ...], CompiledLayout] = {}
        self._allowed: dict[tuple[str, int], list[int]] = {}
        self._encoded: dict[str, list[int]] = {}
        self._hints: dict[str, list[str]] = {}
        self.forward_passes = 0  # for benchmarks
        self.tokens_fed = 0

    # ---- tokens and the small output head ------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _value_tokens(self, text: str) -> list[int]:
        """Tokens of (part of) a value; empty when the tokenizer writes it with other tokens."""
        if text not in self._encoded:
            ids = self.encode(text)
            self._encoded[text] = ids if all(t in self.token_text for t in ids) else []
        return self._encoded[text]

    def _add_columns(self, ids: Sequence[int]) -> None:
        """Grow the set of output tokens we compute logits for (values, separators, choices)."""
        new = [i for i in dict.fromkeys(ids) if i not in self._columns]
        for i in new:
            self._columns[i] = len(self._small_ids)
            self._small_ids.append(i)
        if new:
            index = torch.tensor(self._small_ids, device=self.device)
            self._small_weight = self._head_weight.detach().index_select(0, index).float()
            self._small_bias = None if self._head_bias is None else self._head_bias.detach().index_select(0, index).float()

    def _small_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = hidden.float() @ self._small_weight.T
        return logits if self._small_bias is None else logits + self._small_bias

    def compile(self, layout: Sequence[Piece]) -> CompiledLayout:
        key = tuple(layout)
        if key in self._compiled:
            return self._compiled[key]
        if not (isinstance(layout[0], Forced) and isinstance(layout[-1], Forced)):
            raise ValueError("a layout starts and ends with forced text")
        lead: list[list[int]] = [[]]
        slots: list[Slot] = []
        options: list[list[list[int]]] = []
        for piece in layout:
            if isinstance(piece, Forced):
                lead[-1] += self.encode(piece.text)
            else:
                slots.append(piece)
                options.append([self.encode(c) for c in piece.choices])
                lead.append([])
        for i, slot in enumerate(slots):
            if not lead[i + 1]:
                raise ValueError(f"slot {slot.key} needs forced text after it")
            if slot.kind == "number" and lead[i + 1][0] in self.token_text:
                raise ValueError(f"the text after {slot.key} starts with a token a number could use")
            opts = options[i]
            if any(a != b and a == b[: len(a)] for a in opts for b in opts):
                raise ValueError(f"choice {slot.key}: one option's tokens are a prefix of another's")
            self._add_columns([lead[i + 1][0], *(t for o in opts for t in o)])
        compiled = CompiledLayout(lead=lead, slots=slots, options=options)
        self._compiled[key] = compiled
        return compiled

    # ---- model calls ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _grouped_attention(self) -> Iterator[None]:
        """Our attention only inside the decoder's own calls (generate() keeps the stock one)."""
        config = self.lm.config
        previous = config._attn_implementation
        config._attn_implementation = ATTENTION
        try:
            yield
        finally:
            config._attn_implementation = previous

    def _forward(self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, cache: Cache,
                 plan: SplitPlan | None = None) -> torch.Tensor:
        self.forward_passes += 1
        self.tokens_fed += ids.shape[1]
        token = _SPLIT.set(plan)
        try:
            with self._grouped_attention():
                out = self.body(input_ids=ids.to(self.device), position_ids=positions.to(self.device),
                                attention_mask=mask.to(self.device), use_cache=True, **{self._cache_kw: cache})
        finally:
            _SPLIT.reset(token)
        return out.last_hidden_state[0]

    def _split_ok(self) -> bool:
        return _FLASH_CPU is not None and self.device.type == "cpu" and self._head_weight.dtype == torch.float32

    def _split_plan(self, work: list[_Feed], local: list[list[int]], visible: torch.Tensor, shared: int,
                    length: int) -> SplitPlan | None:
        """Per branch of this pass: the answer slots it sees (its accepted tokens, not other
        branches' or rejected drafts) and its step-local ancestors (see ``SplitPlan``)."""
        if not self._split_ok():
            return None
        config = self.lm.config
        rep = config.num_attention_heads // getattr(config, "num_key_value_heads", config.num_attention_heads)
        groups, start = [], 0
        for feed in work:
            rows = len(feed.chain) + len(feed.nodes)
            seen = visible[feed.branch.row, shared:length].nonzero().flatten() + shared
            keys = torch.cat([seen, torch.arange(length + start, length + start + rows)])
            allowed = torch.zeros(rows, len(keys), dtype=torch.bool)
            allowed[:, : len(seen)] = True
            for i in range(rows):
                allowed[i, [len(seen) + a - start for a in local[start + i]]] = True
            mask = torch.zeros(allowed.shape).masked_fill_(~allowed, float("-inf")).repeat(rep, 1)[None, None]
            groups.append((start, start + rows, keys, mask))
            start += rows
        return SplitPlan(shared=shared, queries=start, groups=groups)

    @torch.inference_mode()
    def prefill(self, ids: Sequence[int], state: PromptState | None = None, room: int = 4096) -> PromptState:
        """Feed ``ids`` after ``state`` (or from scratch). Consumes ``state``; fork() it to keep it."""
        if state is None:
            state = PromptState(Cache(layers=[_BufferLayer(len(ids) + room) for _ in range(self.lm.config.num_hidden_layers)]), 0, None)  # type: ignore[arg-type]
        q, past = len(ids), state.length
        keys = torch.arange(past + q)
        mask = keys[None, :] <= (past + torch.arange(q))[:, None]
        additive = torch.zeros(mask.shape).masked_fill_(~mask, float("-inf"))[None, None]
        plan = SplitPlan(shared=past, queries=q, groups=[], causal=True) if self._split_ok() else None
        hidden = self._forward(torch.tensor([list(ids)]), (past + torch.arange(q))[None], additive, state.cache, plan)
        return PromptState(state.cache, past + q, hidden[-1])

    # ---- decoding --------------------------------------------------------------------------------

    @torch.inference_mode()
    def decode(self, state: PromptState, layout: Sequence[Piece], *, n: int = 1, temperature: float = 0.0,
               top_p: float = 1.0, seed: int = 0, hints: Mapping[str, Sequence[str]] | None = None) -> list[Decoded]:
        """Decode ``n`` answers after a prefilled prompt that already ends with the layout's first
        forced text. Consumes ``state``. Returns the answers' texts with that first text included.

        ``hints`` only steer the drafts, never the result: per slot key, the values worth drafting
        first ("null" or numbers as the answer writes them), then under "*" every number in the
        report (for continuing a number the model has started)."""
        compiled = self.compile(layout)
        # one random stream per sample, drawn in that sample's own token order: what each sample
        # draws never depends on how branches and drafts were scheduled into forward passes
        generator = [torch.Generator().manual_seed(seed * 1_000_003 + k) for k in range(n)]
        self._hints = {k: [x for x in v if number_done(x)] for k, v in (hints or {}).items()}
        self._accepted = self._accepted_before = self._steps = 0
        self._taken = float(MIN_DRAFT)
        visible = torch.zeros(n, state.length + 1024, dtype=torch.bool)
        visible[:, : state.length] = True
        branches = [_Branch(samples=list(range(n)), row=0, position=state.length, out=list(compiled.lead[0]))]
        # the prompt's last position decides the first value: a walk from an empty draft
        work = [_Feed(branches[0], [], [], root=0)]
        logits = self._small_logits(state.hidden[None])
        length = shared = state.length
        while True:
            for feed in work:
                branches += self._walk(compiled, feed, logits, temperature, top_p, generator, visible, len(branches))
            active = [b for b in branches if not b.done]
            if not active:
                break
            budget = self._draft_budget(len(active))
            work = [self._plan(compiled, b, budget) for b in active]
            total = sum(len(f.chain) + len(f.nodes) for f in work)
            if length + total > visible.shape[1]:
                visible = torch.cat([visible, torch.zeros(n, total + 1024, dtype=torch.bool)], 1)
            ids, positions, rows, local = [], [], [], []  # local: step-local ancestors of each query
            for feed in work:
                b, base = feed.branch, len(ids)
                assert feed.chain, "an unfinished branch always has tokens to feed"
                for i, token in enumerate(feed.chain):
                    ids.append(token)
                    positions.append(b.position + i)
                    local.append(list(range(base, base + i + 1)))
                visible[b.row, length + base: length + len(ids)] = True
                b.position += len(feed.chain)
                feed.root, feed.first_node, feed.slot0 = len(ids) - 1, len(ids), length
                depth: list[int] = []
                for token, parent in feed.nodes:
                    depth.append(1 if parent < 0 else depth[parent] + 1)
                    ids.append(token)
                    positions.append(b.position + depth[-1] - 1)
                    local.append([*local[feed.root if parent < 0 else feed.first_node + parent], len(ids) - 1])
                rows += [b.row] * (len(ids) - base)
            end = length + total
            allowed = torch.zeros(total, end, dtype=torch.bool)
            allowed[:, :length] = visible[torch.tensor(rows), :length]
            for q, ancestors in enumerate(local):
                allowed[q, [length + a for a in ancestors]] = True
            mask = torch.zeros(allowed.shape).masked_fill_(~allowed, float("-inf"))[None, None]
            plan = self._split_plan(work, local, visible, shared, length)
            hidden = self._forward(torch.tensor([ids]), torch.tensor([positions]), mask, state.cache, plan)
            length = end
            logits = self._small_logits(hidden)
        answers: dict[int, Decoded] = {}
        for b in branches:
            for sample in b.samples:
                answers[sample] = Decoded(self.tokenizer.decode(b.out), list(b.out), list(b.decisions))
        return [answers[sample] for sample in range(n)]

    def _draft_budget(self, branches: int) -> int:
        """Drafted tokens per branch for the next pass: a rejected drafted token costs a little
        compute, an accepted run saves a forward pass, so follow how much was taken lately
        (about twice the recent accepted tokens per branch, between MIN and DRAFT_BUDGET)."""
        if DRAFT_BUDGET <= 0:
            return 0
        taken = self._accepted - self._accepted_before
        self._accepted_before = self._accepted
        if self._steps:
            self._taken = 0.7 * self._taken + 0.3 * taken / max(branches, 1)
        self._steps += 1
        return int(min(DRAFT_BUDGET, max(MIN_DRAFT, 2 * self._taken + 2)))

    def _plan(self, compiled: CompiledLayout, branch: _Branch, budget: int) -> _Feed:
        """What to feed for a branch: its pending tokens, then a draft tree of likely continuations.

        Drafts: right after a key, a run of nulls (null + the next key, repeated); inside a number,
        the continuations of numbers written in the report that start with what is there so far.
        A drafted token costs a little compute; a right one saves a whole forward pass."""
        feed = _Feed(branch, branch.pending, [])
        branch.pending = []
        slot = branch.slot
        if branch.done or compiled.slots[slot].kind != "number" or budget <= 0:
            return feed
        key = compiled.slots[slot].key
        after = compiled.lead[slot + 1]
        repeat = [branch.last] if branch.last and branch.last != "null" else []  # models often repeat themselves
        paths: list[list[int]] = []
        if branch.text == "":  # a chain of guesses (this field's, then the next fields'), and a repeat
            extra = [[*self._value_tokens(v), *after] for v in repeat if v != self._hints.get(key, ["null"])[0]]
            room = budget - sum(len(p) for p in extra)
            paths = [self._guess_chain(compiled, slot, room), *extra]
        else:  # continuations of numbers that start like this one: likely ones first
            for number in dict.fromkeys([*repeat, *self._hints.get(key, []), *self._hints.get("*", [])]):
                if number.startswith(branch.text) and number != branch.text:
                    paths.append([*self._value_tokens(number[len(branch.text):]), *after])
            if number_done(branch.text):
                paths.insert(0, list(after))
        used = 0
        children: dict[tuple[int, int], int] = {}
        for path in paths:
            parent = -1
            for token in path:
                key = (parent, token)
                if key not in children:
                    if used >= budget:
                        break
                    children[key] = len(feed.nodes)
                    feed.nodes.append((token, parent))
                    used += 1
                parent = children[key]
        return feed

    def _guess_chain(self, compiled: CompiledLayout, slot: int, room: int) -> list[int]:
        """The guessed values of slots ``slot``, ``slot + 1``, ... with their forced keys (``room`` tokens)."""
        path: list[int] = []
        for nxt in range(slot, len(compiled.slots)):
            guesses = self._hints.get(compiled.slots[nxt].key, ["null"])
            if compiled.slots[nxt].kind != "number" or not guesses or len(path) >= room:
                break
            path += [*self._value_tokens(guesses[0]), *compiled.lead[nxt + 1]]
        return path[:max(room, 0)]

    def _walk(self, compiled: CompiledLayout, feed: _Feed, logits: torch.Tensor, temperature: float, top_p: float,
              generator: list[torch.Generator], visible: torch.Tensor, free_row: int) -> list[_Branch]:
        """After a forward pass: take every drafted token the branch's samples actually choose (or
        that the format forces), drawing each choice from the logits at that draft position. Samples
        that draw different tokens split into new branches. Returns the new branches."""
        children: dict[int, dict[int, int]] = {}
        for index, (token, parent) in enumerate(feed.nodes):
            children.setdefault(parent, {})[token] = index
        new: list[_Branch] = []
        stack = [(feed.branch, -1)]
        while stack:
            branch, node = stack.pop()
            while branch.pending and branch.pending[0] in children.get(node, {}):  # forced tokens already fed
                node = children[node][branch.pending.pop(0)]
                self._accept(branch, feed, node, visible)
            if branch.done or branch.pending:
                continue  # finished, or the rest is fed in the next forward pass
            row = feed.root if node < 0 else feed.first_node + node
            groups = self._draw(compiled, branch, logits[row], temperature, top_p, generator)
            targets = [branch]
            for _ in groups[1:]:  # clone before the first group moves on
                twin = copy.deepcopy(branch)
                twin.row = free_row + len(new)
                visible[twin.row] = visible[branch.row]
                new.append(twin)
                targets.append(twin)
            for (token, samples, logit), target in zip(groups, targets):
                target.samples = samples
                if logit is not None:
                    target.decisions.append((len(target.out), logit))
                self._apply(compiled, target, token)
                stack.append((target, node))
        return new

    def _accept(self, branch: _Branch, feed: _Feed, node: int, visible: torch.Tensor) -> None:
        visible[branch.row, feed.slot0 + feed.first_node + node] = True
        branch.position += 1
        self._accepted += 1

    def _draw(self, compiled: CompiledLayout, branch: _Branch, logits: torch.Tensor, temperature: float, top_p: float,
              generator: list[torch.Generator]) -> list[tuple[int, list[int], float | None]]:
        """Each sample's next token; grouped as (token, samples, logit or None when forced)."""
        slot = compiled.slots[branch.slot]
        if slot.kind == "number":
            candidates = self._number_candidates(branch.text, compiled.lead[branch.slot + 1][0])
        else:
            k = len(branch.chosen)
            candidates = sorted({o[k] for o in compiled.options[branch.slot] if o[:k] == branch.chosen})
        if len(candidates) == 1:
            return [(candidates[0], list(branch.samples), None)]
        groups: dict[int, list[int]] = {}
        for sample in branch.samples:
            groups.setdefault(self._sample(logits, candidates, temperature, top_p, generator[sample]), []).append(sample)
        return [(token, samples, float(logits[self._columns[token]])) for token, samples in groups.items()]

    def _apply(self, compiled: CompiledLayout, branch: _Branch, token: int) -> None:
        """Queue the chosen token and whatever the format then forces (pending[0] is the token)."""
        slot = compiled.slots[branch.slot]
        if slot.kind == "number":
            if token == compiled.lead[branch.slot + 1][0]:  # the separator comes with the forced text
                self._finish_slot(compiled, branch)
                return
            branch.out.append(token)
            branch.pending.append(token)
            branch.text += self.token_text[token]
            if not number_can_grow(branch.text):  # e.g. 'null': only the separator may follow
                self._finish_slot(compiled, branch)
            return
        branch.out.append(token)
        branch.pending.append(token)
        branch.chosen.append(token)
        remaining = [o for o in compiled.options[branch.slot] if o[: len(branch.chosen)] == branch.chosen]
        if len(remaining) == 1:  # the choice is made: force the rest of its tokens
            rest = remaining[0][len(branch.chosen):]
            branch.out += rest
            branch.pending += rest
            self._finish_slot(compiled, branch)

    def _finish_slot(self, compiled: CompiledLayout, branch: _Branch) -> None:
        branch.slot += 1
        branch.last = branch.text or branch.last
        branch.text, branch.chosen = "", []
        branch.out += compiled.lead[branch.slot]
        branch.pending += compiled.lead[branch.slot]
        if branch.slot == len(compiled.slots):
            branch.done = True
            branch.pending = []  # the closing text needs no forward pass

    def _number_candidates(self, text: str, stop: int) -> list[int]:
        key = (text, stop)
        if key not in self._allowed:
            ids = [t for t in self.value_ids if number_prefix_ok(text + self.token_text[t])]
            if number_done(text):
                ids.append(stop)
            self._allowed[key] = ids
        return self._allowed[key]

    def _sample(self, logits: torch.Tensor, candidates: list[int], temperature: float, top_p: float,
                generator: torch.Generator) -> int:
        cols = torch.tensor([self._columns[t] for t in candidates], device=logits.device)
        scores = logits.index_select(0, cols).float().cpu()
        if temperature <= 0:
            return candidates[int(scores.argmax())]
        probs = torch.softmax(scores / temperature, dim=0)
        if top_p < 1.0:
            order = torch.argsort(probs, descending=True)
            keep = torch.cumsum(probs[order], 0) - probs[order] < top_p  # smallest set reaching top_p
            mask = torch.zeros_like(probs, dtype=torch.bool)
            mask[order[keep]] = True
            probs = torch.where(mask, probs, torch.zeros_like(probs))
        return candidates[int(torch.multinomial(probs, 1, generator=generator))]
