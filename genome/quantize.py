"""Ternary quantisation (BitNet absmean, TWN threshold) with 2-bit packing, and BitDelta
(sign bits + a scale per tensor or per row) with 1-bit packing. All functions are torch.

Ternary: a weight tensor W becomes trits T in {-1, 0, +1} and one float scale s, W ~ s * T.
  - ``absmean`` (BitNet b1.58): s = mean|W|, T = clip(round(W / s), -1, 1).
  - ``twn`` (Ternary Weight Networks): delta = 0.7 * mean|W|, T = sign(W) * [|W| > delta],
    s = mean of |W| over the kept entries (the L2-optimal scale for that support).
  Trits are packed four to a byte (code = trit + 1 in two bits, first trit in the low bits).

BitDelta: a delta D (fine-tuned minus base, or any vector batch) becomes sign bits and a scale
per row (or per tensor), D ~ scale * sign(D) with scale = mean|D| (L2-optimal for signs).
Signs are packed eight to a byte, row by row (`np.packbits` bit order: first value in the MSB).

Every encoder returns its packed form with `nbytes`, so compression ratios are measured on the
bytes actually produced; `report` gives ratio and relative reconstruction error.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

TERNARY_METHODS = ("absmean", "twn")
_SHIFTS2 = torch.tensor([0, 2, 4, 6], dtype=torch.uint8)
_SHIFTS1 = torch.tensor([7, 6, 5, 4, 3, 2, 1, 0], dtype=torch.uint8)


@dataclass(frozen=True)
class Ternary:
    """A packed ternary tensor. `packed`: uint8 (ceil(numel/4),); `scale`: float32 ()."""

    packed: torch.Tensor
    scale: torch.Tensor
    shape: tuple[int, ...]
    method: str

    @property
    def nbytes(self) -> int:
        """Bytes of the packed form (trits + scale)."""
        return self.packed.numel() + 4


@dataclass(frozen=True)
class BitDelta:
    """Packed signs and scales. `bits`: uint8 (R, ceil(C/8)); `scale`: float32 (R, 1)."""

    bits: torch.Tensor
    scale: torch.Tensor
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        """Bytes of the packed form (sign bits + scales)."""
        return self.bits.numel() + 4 * self.scale.numel()


@dataclass(frozen=True)
class QuantReport:
    """Measured compression: `ratio` = original bytes / packed bytes; `rel_error` =
    ||x - x_hat||_F / ||x||_F (0 when x is all zero and reconstructed exactly)."""

    original_bytes: int
    packed_bytes: int
    ratio: float
    rel_error: float


def ternarize(w: torch.Tensor, method: str = "absmean", eps: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """Trits and scale of `w` (any shape): (int8 same shape, float32 ())."""
    w = w.detach().float()
    mean_abs = w.abs().mean() if w.numel() else torch.tensor(0.0)
    if method == "absmean":
        scale = mean_abs + eps
        trits = (w / scale).round().clamp(-1, 1).to(torch.int8)
        return trits, scale.float()
    if method == "twn":
        keep = w.abs() > 0.7 * mean_abs
        trits = (torch.sign(w) * keep).to(torch.int8)
        scale = w.abs()[keep].mean() if keep.any() else torch.tensor(0.0)
        return trits, scale.float()
    raise ValueError(f"unknown ternary method {method!r}; expected one of {TERNARY_METHODS}")


def pack_trits(trits: torch.Tensor) -> torch.Tensor:
    """Pack trits (int8 in {-1,0,1}, any shape) four to a byte: uint8 (ceil(numel/4),)."""
    codes = (trits.reshape(-1).to(torch.int16) + 1).to(torch.uint8)
    codes = torch.nn.functional.pad(codes, (0, -codes.numel() % 4)).reshape(-1, 4)  # (B, 4)
    return (codes << _SHIFTS2).sum(dim=1, dtype=torch.uint8)  # disjoint bits: sum == or


def unpack_trits(packed: torch.Tensor, numel: int) -> torch.Tensor:
    """Inverse of `pack_trits`: int8 (numel,)."""
    codes = (packed.reshape(-1, 1) >> _SHIFTS2) & 3  # (B, 4)
    return codes.reshape(-1)[:numel].to(torch.int8) - 1


def ternary_encode(w: torch.Tensor, method: str = "absmean") -> Ternary:
    """Ternarise and pack `w`."""
    trits, scale = ternarize(w, method)
    return Ternary(pack_trits(trits), scale, tuple(w.shape), method)


def ternary_decode(t: Ternary) -> torch.Tensor:
    """Reconstruct float32 (t.shape) from a `Ternary`."""
    n = int(torch.tensor(t.shape).prod().item()) if t.shape else 1
    return (unpack_trits(t.packed, n).float() * t.scale).reshape(t.shape)


def pack_signs(x: torch.Tensor) -> torch.Tensor:
    """Sign bits (1 for x >= 0) of a (R, C) tensor, packed per row: uint8 (R, ceil(C/8))."""
    bits = (x >= 0).to(torch.uint8)
    bits = torch.nn.functional.pad(bits, (0, -x.shape[1] % 8)).reshape(x.shape[0], -1, 8)  # (R, B, 8)
    return (bits << _SHIFTS1).sum(dim=2, dtype=torch.uint8)


def unpack_signs(bits: torch.Tensor, cols: int) -> torch.Tensor:
    """Inverse of `pack_signs`: float32 (R, cols) of +1/-1."""
    b = (bits.unsqueeze(-1) >> _SHIFTS1) & 1  # (R, B, 8)
    return b.reshape(bits.shape[0], -1)[:, :cols].float() * 2 - 1


def _rows(x: torch.Tensor, per_row: bool) -> torch.Tensor:
    if per_row and x.dim() >= 2:
        return x.reshape(x.shape[0], -1)
    return x.reshape(1, -1)


def bitdelta_encode(delta: torch.Tensor, per_row: bool = False) -> BitDelta:
    """Compress a delta to signs and scales.

    Args:
        delta: any shape, e.g. (out, in) weight delta or (A, 512) batch of memory vectors.
        per_row: one scale per leading-dim row (R = delta.shape[0]) instead of one per tensor.

    Returns:
        `BitDelta` with bits (R, ceil(C/8)) and scale (R, 1) = mean|row|.
    """
    rows = _rows(delta.detach().float(), per_row)  # (R, C)
    scale = rows.abs().mean(dim=1, keepdim=True)  # (R, 1)
    return BitDelta(pack_signs(rows), scale, tuple(delta.shape))


def bitdelta_decode(bd: BitDelta) -> torch.Tensor:
    """Reconstruct the delta, float32 (bd.shape): scale * sign."""
    n = int(torch.tensor(bd.shape).prod().item()) if bd.shape else 1
    cols = n // bd.bits.shape[0]
    return (unpack_signs(bd.bits, cols) * bd.scale).reshape(bd.shape)


def report(original: torch.Tensor, reconstructed: torch.Tensor, original_bytes: int, packed_bytes: int) -> QuantReport:
    """Compression ratio and relative Frobenius error of a reconstruction."""
    num = torch.linalg.vector_norm((original.float() - reconstructed.float()).reshape(-1)).item()
    den = torch.linalg.vector_norm(original.float().reshape(-1)).item()
    rel = num / den if den > 0 else (0.0 if num == 0 else float("inf"))
    return QuantReport(original_bytes, packed_bytes, original_bytes / max(packed_bytes, 1), rel)
