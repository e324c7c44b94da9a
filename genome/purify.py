"""Haar-wavelet cross-scale coherence purification of weight tensors (torch).

Each row of a weight matrix (a 1-D tensor is one row) is padded to a power of two by repeating
its last value and decomposed with the Haar wavelet over up to `MAX_LEVELS` scales. A detail
coefficient at scale s is *coherent* when its parent at scale s+1 (the coefficient covering the
same positions, one octave coarser) is also large:

    c = min(1, |d_s[i] * d_{s+1}[i // 2]| / (rms(d_s) * rms(d_{s+1})))        (per row)

Pattern that persists across scales is kept; pattern present at one scale only is attenuated:

    d_s[i] <- d_s[i] * (1 - strength * (1 - c))

The coarsest detail and the approximation are kept as they are. After the inverse transform the
padding is cut and the tensor's original mean and standard deviation are restored. strength 0
returns the tensor unchanged (up to float rounding); strength 1 removes every incoherent part.

`purify_tensor` also reports what changed: the measurements before and after, the relative weight
change, and how far the layer's outputs moved on seeded Gaussian probe inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genome.errors import BadInput
from genome.measure import Measure, measure_values

MAX_LEVELS = 8


@dataclass(frozen=True)
class PurifyReport:
    """What purification did to one tensor.

    Attributes:
        before, after: `Measure` of the tensor before and after.
        weight_change: ||W' - W||_F / ||W||_F.
        output_shift: ||X W'^T - X W^T||_F / ||X W^T||_F on probe inputs X (n_probes, in).
        output_cosine: mean cosine similarity between old and new outputs, per probe.
    """

    before: Measure
    after: Measure
    weight_change: float
    output_shift: float
    output_cosine: float


def haar_forward(x: torch.Tensor, levels: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Orthonormal Haar transform along the last axis.

    Args:
        x: (R, n), n divisible by 2**levels.
        levels: number of scales.

    Returns:
        approximation (R, n / 2**levels) and details [(R, n/2), (R, n/4), ...], finest first.
    """
    details = []
    a = x
    for _ in range(levels):
        even, odd = a[:, 0::2], a[:, 1::2]
        details.append((even - odd) / 2**0.5)
        a = (even + odd) / 2**0.5
    return a, details


def haar_inverse(approx: torch.Tensor, details: list[torch.Tensor]) -> torch.Tensor:
    """Inverse of `haar_forward`: (R, n)."""
    a = approx
    for d in reversed(details):
        out = torch.empty(a.shape[0], a.shape[1] * 2, dtype=a.dtype)
        out[:, 0::2] = (a + d) / 2**0.5
        out[:, 1::2] = (a - d) / 2**0.5
        a = out
    return a


def purify_rows(w: torch.Tensor, strength: float) -> torch.Tensor:
    """Purify each row of (R, C); returns (R, C) float32 with the input's mean and std."""
    if not 0.0 <= strength <= 1.0:
        raise BadInput(f"strength must be between 0 and 1, got {strength}")
    x = w.float()  # float32: the transform is orthonormal, so rounding stays at float32 level
    rows, cols = x.shape
    n = 1 << max(0, (cols - 1).bit_length())
    levels = min(MAX_LEVELS, n.bit_length() - 1)
    if levels < 2 or strength == 0.0:
        return w.float().clone()
    padded = torch.cat([x, x[:, -1:].expand(rows, n - cols)], dim=1)  # (R, n)
    approx, details = haar_forward(padded, levels)
    sigma = details[0].abs().median(dim=1, keepdim=True).values / 0.6745  # (R, 1) noise level
    for s in range(levels - 1):
        d, parent = details[s], details[s + 1]  # (R, m), (R, m/2)
        p = parent.repeat_interleave(2, dim=1)  # (R, m)
        coh = ((d * p).abs() / (sigma * sigma).clamp_min(1e-30)).clamp(max=1.0)
        details[s] = d * (1.0 - strength * (1.0 - coh))
    out = haar_inverse(approx, details)[:, :cols]
    mu, sd = x.double().mean(), x.double().std(unbiased=False)
    out = out.double()
    new_sd = out.std(unbiased=False)
    if sd > 0 and new_sd > 0:
        out = (out - out.mean()) / new_sd * sd + mu
    return out.float()


def _as_rows(w: torch.Tensor) -> torch.Tensor:
    return w.reshape(1, -1) if w.dim() <= 1 else w.reshape(w.shape[0], -1)


def probe_shift(w: torch.Tensor, w_new: torch.Tensor, n_probes: int = 64, seed: int = 0) -> tuple[float, float]:
    """Relative output change and mean output cosine on seeded Gaussian probes.

    A matrix (out, in...) is applied as a linear layer, X (n_probes, in) @ W^T; a 1-D tensor
    (norm weight, bias) as an elementwise scale, X * w.
    """
    gen = torch.Generator().manual_seed(seed)
    if w.dim() <= 1:
        x = torch.randn(n_probes, w.numel(), generator=gen)  # (P, n)
        y, y_new = x * w.reshape(1, -1).float(), x * w_new.reshape(1, -1).float()
    else:
        rows, new_rows = _as_rows(w).float(), _as_rows(w_new).float()  # (out, in)
        x = torch.randn(n_probes, rows.shape[1], generator=gen)  # (P, in)
        y, y_new = x @ rows.T, x @ new_rows.T  # (P, out)
    den = torch.linalg.vector_norm(y).item()
    shift = torch.linalg.vector_norm(y_new - y).item() / den if den > 0 else 0.0
    cos = torch.nn.functional.cosine_similarity(y, y_new, dim=1).mean().item()
    return shift, cos


def purify_tensor(w: torch.Tensor, strength: float = 0.5, n_probes: int = 64) -> tuple[torch.Tensor, PurifyReport]:
    """Purify one weight tensor (any shape) and report the effect.

    Returns:
        (purified float32 tensor of w's shape, `PurifyReport`).
    """
    new = purify_rows(_as_rows(w.detach()), strength).reshape(w.shape)
    before = measure_values(_sample(w))
    after = measure_values(_sample(new))
    den = torch.linalg.vector_norm(w.float()).item()
    change = torch.linalg.vector_norm(new - w.float()).item() / den if den > 0 else 0.0
    shift, cos = probe_shift(w, new, n_probes)
    return new, PurifyReport(before, after, change, shift, cos)


def _sample(w: torch.Tensor) -> object:
    from genome.measure import MAX_SAMPLES, stratified_indices

    flat = w.detach().reshape(-1).float().numpy()
    return flat[stratified_indices(flat.size, MAX_SAMPLES)]
