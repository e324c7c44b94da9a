"""Sparsification of task vectors by partial selection, never by sorting whole tensors.

`kth_largest` finds, per (model, group), the k-th largest of non-negative values such as |delta|:
with the whole tensor in one chunk it is `torch.kthvalue` (a selection, linear time); over several
chunks it is an exact two-pass radix select on the float32 bit patterns (non-negative floats order
like their bits): a histogram of the top 16 bits finds the bucket holding the k-th value, a second
histogram of the low 16 bits inside that bucket finds the value itself. Both give the same number.

Masks keep every value >= the threshold; ties at the threshold (in practice zeros, which no sign
election counts) are all kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from genome.recombine.task import Chunk, MergeTask

_BINS = 1 << 16


def counts(task: MergeTask, density: torch.Tensor) -> torch.Tensor:
    """k = int(density * N) values kept per model: int64 (M,)."""
    return (density.double() * task.numel).floor().long().clamp(0, task.numel)


def kth_largest(task: MergeTask, values: Callable[[Chunk], torch.Tensor], k: torch.Tensor) -> torch.Tensor:
    """The k-th largest value per (model, group).

    Args:
        task: supplies the chunks.
        values: chunk -> non-negative float32 (M, G, L).
        k: (M,) rank per model; 0 gives +inf (keep nothing), k >= N gives 0 (keep everything).

    Returns:
        float32 (M, G) thresholds.
    """
    m, g = len(task.sources), task.groups
    out = torch.empty(m, g)
    if task.n_chunks == 1:
        v = values(next(iter(task.chunks())))  # (M, G, N)
        for i in range(m):
            ki = int(k[i])
            if ki <= 0:
                out[i] = float("inf")
            elif ki >= task.numel:
                out[i] = 0.0
            else:
                out[i] = torch.kthvalue(v[i], task.numel - ki + 1, dim=-1).values
        return out
    return _radix(lambda: (values(c) for c in task.chunks()), k, m, g, task.numel)


def _radix(passes: Callable[[], Iterable[torch.Tensor]], k: torch.Tensor, m: int, g: int, n: int) -> torch.Tensor:
    q = m * g
    want = k.repeat_interleave(g)  # (Q,) rank sought in each (model, group)
    hist = torch.zeros(q, _BINS, dtype=torch.int64)
    for v in passes():
        bits = v.reshape(q, -1).view(torch.int32)  # (Q, L), ordered like the values (v >= 0)
        for i in range(q):
            hist[i] += torch.bincount(bits[i] >> 16, minlength=_BINS)
    hi, above = _bucket(hist, want)  # bucket of the k-th value; how many lie above it
    hist.zero_()
    for v in passes():
        bits = v.reshape(q, -1).view(torch.int32)
        for i in range(q):
            row = bits[i]
            hist[i] += torch.bincount(row[(row >> 16) == hi[i]] & 0xFFFF, minlength=_BINS)
    lo, _ = _bucket(hist, want - above)
    thr = ((hi << 16) | lo).int().view(torch.float32)
    thr = torch.where(want <= 0, torch.tensor(float("inf")), thr)
    thr = torch.where(want >= n, torch.tensor(0.0), thr)
    return thr.view(m, g)


def _bucket(hist: torch.Tensor, want: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the bin where the count from the top reaches `want`, and the count above it."""
    from_top = hist.flip(1).cumsum(1)  # (Q, B): values in the top j + 1 bins
    idx = (from_top < want.clamp_min(1).unsqueeze(1)).sum(1).clamp_max(hist.shape[1] - 1)  # (Q,)
    above = torch.where(idx > 0, from_top.gather(1, (idx - 1).clamp_min(0).unsqueeze(1)).squeeze(1),
                        torch.zeros_like(idx))
    return hist.shape[1] - 1 - idx, above


def keep_top(delta: torch.Tensor, thr: torch.Tensor) -> torch.Tensor:
    """Mask of |delta| >= threshold. delta: (M, G, L); thr: (M, G) -> bool (M, G, L)."""
    return delta.abs() >= thr.unsqueeze(-1)


def keep_random(task: MergeTask, chunk: Chunk, density: torch.Tensor) -> torch.Tensor:
    """DARE's drop: each value kept with probability density (per model), seeded per chunk."""
    u = torch.rand(chunk.xs.shape, generator=task.generator(chunk))  # (M, G, L)
    return u < density.view(-1, 1, 1)


def combine(task: MergeTask, delta: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """Weighted sum of (sparsified) deltas, with optional sign consensus and normalisation.

    TIES sign election: the sign of the sum of weighted deltas wins (zero counts as +); only
    deltas of that sign are summed (disjoint merge), and with ``normalize`` the sum is divided by
    the weights of the deltas that took part (1 where none did).

    Args:
        delta: (M, G, L) sparsified deltas (unweighted).
        base: (G, L).

    Returns:
        (G, L) base + lambda * merged delta.
    """
    w = task.param("weight").view(-1, 1, 1)  # (M, 1, 1)
    weighted = delta.mul_(w)  # delta is the caller's temporary: weighted in place
    divisor: torch.Tensor | float = float(w.sum())
    if task.options.get("consensus"):
        elected = weighted.sum(0).ge_(0).mul_(2).sub_(1)  # (G, L) +1 / -1
        agree = (weighted * elected) > 0  # (M, G, L): same sign as elected (zeros never agree)
        mixed = weighted.masked_fill_(~agree, 0.0).sum(0)
        divisor = (agree * w).sum(0)
    else:
        mixed = weighted.sum(0)
    if task.options.get("normalize"):
        if isinstance(divisor, torch.Tensor):
            mixed.div_(divisor.masked_fill_(divisor.abs() < 1e-8, 1.0))
        elif abs(divisor) >= 1e-8:
            mixed.div_(divisor)
    lam = float(task.options.get("lambda", 1.0))
    if lam != 1.0:
        mixed.mul_(lam)
    return mixed.add_(base)
