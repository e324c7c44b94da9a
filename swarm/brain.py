"""The agents' brains: many small MLPs kept as one stacked parameter tensor.

Every agent maps [query (D) ; memory (M)] -> tanh(H) -> tanh(H) -> response (D). A colony stores
all its agents' parameters flat in one (S, P) tensor, S slots by P parameters, so that mutation
is one add and the forward pass is three batched matmuls over all slots at once.

The memory half of the first layer does not depend on the query, so it is computed once per agent
per step (a (S, M) x (S, M, H) product) instead of once per (agent, query) pair.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from swarm.params import BrainParams


class BrainViews(NamedTuple):
    """Views into a flat (S, P) parameter tensor; no copies."""

    w_query: torch.Tensor  # (S, D, H)
    w_memory: torch.Tensor  # (S, M, H)
    b1: torch.Tensor  # (S, H)
    w2: torch.Tensor  # (S, H, H)
    b2: torch.Tensor  # (S, H)
    w3: torch.Tensor  # (S, H, D)
    b3: torch.Tensor  # (S, D)


def _layout(p: BrainParams) -> list[tuple[str, tuple[int, ...]]]:
    d, m, h = p.embed_dim, p.memory_dim, p.hidden
    return [
        ("w_query", (d, h)), ("w_memory", (m, h)), ("b1", (h,)),
        ("w2", (h, h)), ("b2", (h,)),
        ("w3", (h, d)), ("b3", (d,)),
    ]


def param_count(p: BrainParams) -> int:
    """Parameters of one agent's brain (98,624 for D=64, M=512, H=128)."""
    return sum(math.prod(shape) for _, shape in _layout(p))


def views(flat: torch.Tensor, p: BrainParams) -> BrainViews:
    """Split a flat (S, P) tensor into named per-layer views of shape (S, *layer_shape)."""
    out, offset = {}, 0
    for name, shape in _layout(p):
        size = math.prod(shape)
        out[name] = flat[:, offset : offset + size].unflatten(1, shape)
        offset += size
    return BrainViews(**out)


def init_params(n: int, p: BrainParams, gen: torch.Generator) -> torch.Tensor:
    """Fresh brains, LeCun-normal weights and small random biases: (n, P) float32."""
    flat = torch.empty(n, param_count(p))
    v = views(flat, p)
    fan_in_1 = p.embed_dim + p.memory_dim
    for tensor, fan_in in (
        (v.w_query, fan_in_1), (v.w_memory, fan_in_1), (v.w2, p.hidden), (v.w3, p.hidden)
    ):
        tensor.normal_(0.0, 1.0 / math.sqrt(fan_in), generator=gen)
    for bias in (v.b1, v.b2, v.b3):
        bias.normal_(0.0, 0.1, generator=gen)
    return flat


def forward(flat: torch.Tensor, p: BrainParams, queries: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
    """Answer a padded batch of queries with every slot's own brain.

    Args:
        flat: (S, P) stacked parameters.
        queries: (S, Q, D) queries per slot (padding rows are answered and ignored by the caller).
        memory: (S, M) each slot's memory vector.

    Returns:
        (S, Q, D) unit-length responses.
    """
    v = views(flat, p)
    mem_term = torch.bmm(memory.unsqueeze(1), v.w_memory)  # (S, 1, H)
    h = torch.baddbmm(mem_term + v.b1.unsqueeze(1), queries, v.w_query).tanh_()  # (S, Q, H)
    h = torch.baddbmm(v.b2.unsqueeze(1), h, v.w2).tanh_()  # (S, Q, H)
    out = torch.baddbmm(v.b3.unsqueeze(1), h, v.w3)  # (S, Q, D)
    return torch.nn.functional.normalize(out, dim=-1)
