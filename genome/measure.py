"""Tensor measurements: entropy, kurtosis, scale-coherence theta, and a 0-100 quality score.

Every measurement works on at most `MAX_SAMPLES` values drawn deterministically (stratified:
one value from each of k equal strata, offsets from a fixed seed), so a measurement costs the
same for a 1k and a 1G-element tensor and gives the same result on every run. Quantised tensors
are sampled by whole blocks, dequantising only the blocks drawn.

Measuring many tensors in a row (``extract``, ``anatomy``) passes one `Workspace`: its scratch
buffers are reused, because fresh 100k-value temporaries cost more in page faults than in
arithmetic. Results are bit-for-bit the same with or without it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import lru_cache

import numpy as np

from genome.formats.base import PLAIN_DTYPES, TensorInfo

MAX_SAMPLES = 100_000
_SUM = np.add.reduce
HIST_BINS = 256
#: Tier lower bounds, best first: score > 90 PRISTINE, >= 70 HEALTHY, >= 50 DEGRADED, else DEAD.
TIERS: tuple[tuple[str, float], ...] = (("PRISTINE", 90.0), ("HEALTHY", 70.0), ("DEGRADED", 50.0), ("DEAD", -1.0))


@dataclass(frozen=True)
class Measure:
    """Measurements of one tensor (see `measure_values` for definitions)."""

    n_sampled: int
    mean: float
    std: float
    entropy: float
    kurtosis: float
    theta: float
    zero_frac: float
    nonfinite_frac: float
    score: float
    tier: str

    def as_dict(self) -> dict[str, float | int | str]:
        """Plain dict, for JSON manifests and reports (fields in order)."""
        return {name: getattr(self, name) for name in _MEASURE_FIELDS}  # asdict deep-copies: 10x slower


_MEASURE_FIELDS = tuple(f.name for f in fields(Measure))


class Workspace:
    """Scratch buffers reused across measurements; one per thread (not thread-safe)."""

    def __init__(self) -> None:
        self._bufs: dict[str, np.ndarray] = {}

    def buffer(self, name: str, n: int, dtype: np.dtype | type) -> np.ndarray:
        """An uninitialised (n,) array of `dtype`, the same memory each time `name` is asked for."""
        buf = self._bufs.get(name)
        if buf is None or buf.size < n or buf.dtype != np.dtype(dtype):
            buf = self._bufs[name] = np.empty(n, dtype)
        return buf[:n]


@lru_cache(maxsize=256)
def stratified_indices(n: int, k: int = MAX_SAMPLES, seed: int = 0) -> np.ndarray:
    """Sorted indices of k values out of n, one per equal stratum (all n if n <= k): int64
    (min(n,k),), read-only and cached (models repeat the same tensor sizes)."""
    if n <= k:
        idx = np.arange(n, dtype=np.int64)
        idx.flags.writeable = False
        return idx
    rng = np.random.default_rng(seed)
    bounds = np.arange(k + 1, dtype=np.int64) * n // k  # k non-empty integer strata
    width = np.diff(bounds)
    idx = bounds[:-1] + np.minimum((rng.random(k) * width).astype(np.int64), width - 1)
    idx.flags.writeable = False
    return idx


def sample_values(raw: np.ndarray, info: TensorInfo, k: int = MAX_SAMPLES, seed: int = 0) -> np.ndarray:
    """Draw at most about `k` values of a tensor from its stored bytes.

    Args:
        raw: stored bytes, uint8 (nbytes,).
        info: the tensor's `TensorInfo`.
        k: sample size cap.
        seed: sampling seed (fixed by default, so results are reproducible).

    Returns:
        float64 (m,), m <= k (quantised: whole blocks, m <= k rounded up to a block).
    """
    if info.dtype in PLAIN_DTYPES:
        np_dtype, _ = PLAIN_DTYPES[info.dtype]
        store = raw.view(np.dtype(np_dtype))
        sub = store if store.size <= k else store[stratified_indices(store.size, k, seed)]
        if info.dtype == "BF16":
            return (sub.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
        if info.dtype.startswith("F8"):
            from genome.formats.base import decode_plain

            return decode_plain(sub.view(np.uint8), info.dtype, (sub.size,)).astype(np.float64)
        return sub.astype(np.float64)
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    from genome.formats.gguf_io import dequantize_blocks

    block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType[info.dtype]]
    blocks = stratified_indices(raw.size // type_size, max(1, -(-k // block)), seed)
    return dequantize_blocks(raw, info.dtype, blocks).reshape(-1).astype(np.float64)


def entropy(x: np.ndarray, bins: int = HIST_BINS) -> float:
    """Shannon entropy of a histogram of `x`, normalised to [0, 1] by log2(bins).

    The histogram spans the 0.1%-99.9% quantile range (values outside fall in the edge bins),
    so a few outliers do not squeeze everything else into one bin.
    """
    return _entropy_sorted(np.sort(np.asarray(x, dtype=np.float64).reshape(-1)), bins)


def _quantile_sorted(xs: np.ndarray, q: float) -> float:
    pos = q * (xs.size - 1)
    lo = int(pos)
    hi = min(lo + 1, xs.size - 1)
    return float(xs[lo] + (pos - lo) * (xs[hi] - xs[lo]))


@lru_cache(maxsize=8)
def _steps(bins: int) -> np.ndarray:
    """1 .. bins-1 as float64, read-only (the multipliers of the inner bin edges)."""
    steps = np.arange(1, bins, dtype=np.float64)
    steps.flags.writeable = False
    return steps


def _entropy_sorted(xs: np.ndarray, bins: int = HIST_BINS) -> float:
    n = xs.size
    if n == 0:
        return 0.0
    lo, hi = _quantile_sorted(xs, 0.001), _quantile_sorted(xs, 0.999)
    if not hi > lo:
        lo, hi = float(xs[0]), float(xs[-1])
        if not hi > lo:
            return 0.0
    edges = lo + (hi - lo) * _steps(bins) / bins  # inner bin edges, (bins - 1,)
    cuts = xs.searchsorted(edges, "left")  # values below each edge (sorted input), (bins - 1,)
    counts = np.empty(bins, np.int64)
    counts[0], counts[-1] = cuts[0], n - cuts[-1]
    np.subtract(cuts[1:], cuts[:-1], out=counts[1:-1])
    p = counts[counts > 0] / n
    return float(-(p * np.log2(p)).sum() / math.log2(bins))


def kurtosis(x: np.ndarray) -> float:
    """Excess kurtosis m4 / m2^2 - 3 (0 for a Gaussian; 0 by convention for constant values)."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if x.size < 2:
        return 0.0
    return _std_kurtosis(x, _mean(x), np.empty_like(x))[1]


def theta(x: np.ndarray) -> float:
    """Scale-coherence angle in degrees, 0-90: atan of the coefficient of variation of the
    gaps between sorted values.

    Evenly spaced values (a ramp) give 0; exponential gaps (uniform noise) give 45; values
    clumped at a few levels with rare large gaps (structure, quantisation) approach 90.
    Constant values (no gaps) give 0.
    """
    return _theta_sorted(np.sort(np.asarray(x, dtype=np.float64).reshape(-1)))


def _theta_sorted(xs: np.ndarray, scratch: np.ndarray | None = None) -> float:
    if xs.size < 3:
        return 0.0
    gaps = np.subtract(xs[1:], xs[:-1], out=None if scratch is None else scratch[: xs.size - 1])
    mean = float(xs[-1] - xs[0]) / gaps.size
    if mean <= 0:
        return 0.0
    return float(math.degrees(math.atan(_std_inplace(gaps) / mean)))


def _mean(a: np.ndarray) -> float:
    """``float(a.mean())`` of a non-empty 1-D float64 array, the same bits without its Python
    wrapper (the same pairwise sum, divided by the count)."""
    return float(_SUM(a)) / a.size


def _std_inplace(a: np.ndarray) -> float:
    """``a.std()`` (same operations, same bits) computed in place: `a` is overwritten."""
    np.subtract(a, _mean(a), out=a)
    np.multiply(a, a, out=a)
    return math.sqrt(_mean(a))


def _std_kurtosis(xs: np.ndarray, mean: float, scratch: np.ndarray) -> tuple[float, float]:
    """``(xs.std(), kurtosis(xs))`` with one pass of squared deviations kept in `scratch`."""
    c2 = np.subtract(xs, mean, out=scratch[: xs.size])
    np.multiply(c2, c2, out=c2)
    m2 = _mean(c2)
    if xs.size < 2 or not m2 > 0:
        return math.sqrt(m2), 0.0
    # einsum, not np.dot: BLAS dot spins up threads and costs ~100x more on a busy 2-core machine
    return math.sqrt(m2), float(np.einsum("i,i->", c2, c2) / xs.size / (m2 * m2) - 3.0)


def quality_score(ent: float, kurt: float, zero_frac: float, nonfinite_frac: float, std: float) -> float:
    """Quality 0-100 from the sample's measurements.

    ``score = 100 * (1 - zero_frac) * f_entropy * f_kurtosis``, where

    - ``f_entropy = min(1, entropy / 0.5)``: a tensor whose values use fewer than about
      2^(0.5 * 8) = 16 effective histogram levels has collapsed (saturated, constant, or crushed
      by quantisation) and loses score in proportion;
    - ``f_kurtosis = 1 / (1 + max(0, log10(1 + |kurtosis|) - 3))``: up to |kurtosis| = 999 costs
      nothing (trained weights really have heavy tails: MiniLM's position embeddings reach ~320);
      beyond that a few huge outliers dominate the tensor, and every further factor of ten costs
      another step;
    - ``zero_frac``: the fraction of exact zeros (dead units, pruned or never trained) is lost.

    Any NaN/Inf, or all values zero, gives 0 (DEAD); so does a constant tensor (entropy 0).
    The score is a heuristic health check, not a claim about accuracy: a deliberately ternary
    tensor stored as floats also reads as collapsed.
    """
    if nonfinite_frac > 0 or (std == 0 and zero_frac == 1.0):
        return 0.0
    f_entropy = min(1.0, ent / 0.5)
    f_kurt = 1.0 / (1.0 + max(0.0, math.log10(1.0 + abs(kurt)) - 3.0))
    return float(100.0 * (1.0 - zero_frac) * f_entropy * f_kurt)


def tier(score: float) -> str:
    """PRISTINE (> 90), HEALTHY (70-90), DEGRADED (50-70) or DEAD (< 50)."""
    if score > 90.0:
        return "PRISTINE"
    if score >= 70.0:
        return "HEALTHY"
    if score >= 50.0:
        return "DEGRADED"
    return "DEAD"


def measure_values(x: np.ndarray, workspace: Workspace | None = None) -> Measure:
    """Measure a sample of values (float64 (m,)); see `quality_score` for the score.

    The sample is sorted once; quantiles, the histogram (by binary search) and the gaps all
    come from the sorted copy.
    """
    return _measure_sorted(np.sort(np.asarray(x, dtype=np.float64).reshape(-1)), workspace or Workspace())


def _measure_sorted(xs: np.ndarray, ws: Workspace) -> Measure:
    """`measure_values` of a sorted float64 sample (NaN last, as `np.sort` leaves it)."""
    n_sampled, nonfinite = int(xs.size), 0.0
    if xs.size and not (math.isfinite(xs[0]) and math.isfinite(xs[-1])):  # sorted: -inf first, inf/NaN last
        finite = np.isfinite(xs)
        nonfinite = float(1.0 - finite.mean())
        xs = xs[finite]
    if xs.size == 0:
        return Measure(n_sampled, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, nonfinite, 0.0, "DEAD")
    mean = _mean(xs)
    zero_frac = float(xs.searchsorted(0.0, "right") - xs.searchsorted(0.0, "left")) / xs.size
    scratch = ws.buffer("scratch", xs.size, np.float64)
    std, kurt = _std_kurtosis(xs, mean, scratch)
    ent, th = _entropy_sorted(xs), _theta_sorted(xs, scratch)
    score = quality_score(ent, kurt, zero_frac, nonfinite, std)
    return Measure(n_sampled, mean, std, ent, kurt, th, zero_frac, nonfinite, score, tier(score))


def _sorted_sample(raw: np.ndarray, info: TensorInfo, k: int, ws: Workspace, seed: int = 0) -> np.ndarray:
    """`sample_values`, sorted (NaN last): float64 (m,), in `ws` for float dtypes.

    Float32-representable samples (F32, F16, BF16) are sorted as float32, which orders them
    exactly as float64 would and is faster; they are widened after sorting.
    """
    if info.dtype not in ("F32", "F16", "BF16", "F64"):
        vals = sample_values(raw, info, k, seed)  # ints, F8, quantised: a fresh float64 array
        vals.sort()
        return vals
    store = raw.view(np.dtype(PLAIN_DTYPES[info.dtype][0]))
    m = min(store.size, k)
    sub = ws.buffer("store" + info.dtype, m, store.dtype)
    if store.size <= k:
        np.copyto(sub, store)
    else:
        np.take(store, stratified_indices(store.size, k, seed), out=sub)
    if info.dtype == "F64":
        sub.sort()
        return sub
    if info.dtype == "BF16":
        bits = ws.buffer("bits", m, np.uint32)
        np.copyto(bits, sub)
        np.left_shift(bits, 16, out=bits)
        vals = bits.view(np.float32)
    elif info.dtype == "F16":
        vals = ws.buffer("f32", m, np.float32)
        np.copyto(vals, sub)
    else:
        vals = sub
    vals.sort()
    out = ws.buffer("sorted", m, np.float64)
    np.copyto(out, vals)
    return out


def measure_tensor(raw: np.ndarray, info: TensorInfo, k: int = MAX_SAMPLES,
                   workspace: Workspace | None = None) -> Measure:
    """Measure a tensor from its stored bytes (at most `k` values sampled).

    Args:
        raw: stored bytes, uint8 (nbytes,).
        info: the tensor's `TensorInfo`.
        k: sample size cap.
        workspace: scratch buffers to reuse when measuring many tensors in a row (one thread).
    """
    if info.nbytes == 0:
        return measure_values(np.zeros(0))
    ws = workspace or Workspace()
    return _measure_sorted(_sorted_sample(raw, info, k, ws), ws)
