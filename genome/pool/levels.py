"""How weight tensors become gene blocks, and the level keys each block is deduplicated on.

Blocks (default 4096 elements):
- a tensor of at most `block` elements is one gene (whole small tensors: norms, biases);
- a larger tensor whose rows hold at most `block` elements is cut into blocks of whole rows,
  ``block // row_length`` rows each (MiniLM: 10 rows of 384, or 2 rows of 1536);
- anything else (long 1-D tensors, rows longer than `block`) into flat chunks of `block` elements.
Quantised GGUF types are cut the same way in whole rows of their stored bytes.

Level keys of a block:
- L1 (`genome.pool.gene.gene_hash`): its exact bytes, dtype and shape;
- L2 `canonical_key`: its values as float32 (float64 only when they do not fit), row-major, and its
  shape: the same values stored as BF16, F16 or F32 collapse here;
- L3 `behaviour_keys`: its outputs on seeded Gaussian probe inputs (a row block times probe
  vectors; a 1-D block times probe values element-wise), computed in float64 and rounded to
  `bits` significant bits;
- L4 `signatures`: MinHash of the signed non-zero positions of its absmean ternary form.
Collapses beyond L2 are checked with `cosine` and `shadow_error` (the layer's outputs on probe
inputs with the substitute block in place) and stored losslessly with `xor_delta`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import blake3
import numpy as np

from genome.formats.base import PLAIN_DTYPES, TensorInfo, decode_plain, encode_plain
from genome.minhash import MinHasher

#: dtypes whose values the levels L2-L4 compare (others are deduplicated on exact bytes only).
NUMERIC = frozenset({"F64", "F32", "F16", "BF16"})
L3_PROBES = 4
SHADOW_PROBES = 8


@dataclass(frozen=True)
class BlockPlan:
    """How one tensor is cut. ``mode``: ``rows`` (blocks of whole rows) or ``flat`` (chunks).

    Attributes:
        rows: rows per block (``rows``) — 1 for ``flat``.
        width: elements per row (``rows``) or per chunk (``flat``).
        total: rows (``rows``) or elements (``flat``) in the tensor.
        row_bytes: stored bytes per row (``rows``) or per element (``flat``).
    """

    mode: str
    rows: int
    width: int
    total: int
    row_bytes: int

    @property
    def count(self) -> int:
        step = self.rows if self.mode == "rows" else self.width
        return max(1, -(-self.total // step)) if step else 1

    def shape(self, i: int) -> tuple[int, ...]:
        """Logical shape of block i."""
        if self.mode == "rows":
            return (min(self.rows, self.total - i * self.rows), self.width)
        return (min(self.width, self.total - i * self.width),)

    def byte_range(self, i: int) -> tuple[int, int]:
        """[start, end) of block i in the tensor's stored bytes."""
        step = self.rows if self.mode == "rows" else self.width
        start = i * step
        end = min(self.total, start + step)
        return start * self.row_bytes, end * self.row_bytes

    def layout(self) -> tuple[list[tuple[int, int]], list[tuple[int, ...]]]:
        """`byte_range` and `shape` of every block: ([(start, end)] * count, [shape] * count)."""
        n = self.count
        step = (self.rows if self.mode == "rows" else self.width) * self.row_bytes
        end = self.total * self.row_bytes
        ranges = [(a, min(a + step, end)) for a in range(0, n * step, step)] if step else [(0, 0)] * n
        return ranges, [self.shape(0)] * (n - 1) + [self.shape(n - 1)]

    def element_range(self, i: int) -> tuple[int, int]:
        """[start, end) of block i in the tensor's flattened values."""
        if self.mode == "rows":
            start = i * self.rows
            return start * self.width, min(self.total, start + self.rows) * self.width
        return i * self.width, min(self.total, (i + 1) * self.width)


def plan(info: TensorInfo, block: int) -> BlockPlan:
    """The block plan of a tensor (see the module docstring)."""
    shape = info.shape or (1,)
    numel = info.numel
    if info.dtype in PLAIN_DTYPES:
        esize = PLAIN_DTYPES[info.dtype][1]
        row = shape[-1] if len(shape) >= 2 else numel
        if numel <= block:
            rows_total = numel // max(row, 1) if len(shape) >= 2 and row else 1
            if len(shape) >= 2 and row:
                return BlockPlan("rows", rows_total, row, rows_total, row * esize)
            return BlockPlan("flat", 1, numel, numel, esize)
        if len(shape) >= 2 and row <= block:
            return BlockPlan("rows", block // row, row, numel // row, row * esize)
        return BlockPlan("flat", 1, block, numel, esize)
    # quantised: whole rows of stored bytes
    rows_total = numel // shape[-1] if shape[-1] else 1
    row_bytes = info.nbytes // max(rows_total, 1)
    per = max(1, block // max(shape[-1], 1))
    return BlockPlan("rows", min(per, rows_total), shape[-1], rows_total, row_bytes)


def numeric(info: TensorInfo) -> bool:
    """True if the levels beyond L1 apply (plain float dtypes)."""
    return info.dtype in NUMERIC


def canonical(raw: np.ndarray, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """Values in canonical form: float32 row-major, or float64 when float32 would round them."""
    values = decode_plain(raw, dtype, shape)
    if values.dtype == np.float32:
        return values
    if dtype == "F64":
        as32 = values.astype(np.float32)
        if np.array_equal(as32.astype(np.float64), values):
            return as32
        return values
    return values.astype(np.float32)


def encode(values: np.ndarray, dtype: str) -> np.ndarray:
    """Canonical values back to a dtype's exact bytes: uint8 (nbytes,)."""
    if dtype == "F64":
        return np.ascontiguousarray(values, dtype="<f8").reshape(-1).view(np.uint8)
    return encode_plain(values, dtype)


def finite(values: np.ndarray) -> bool:
    """True if every value is finite (a float sum is NaN/inf if any value is, or on overflow)."""
    with np.errstate(over="ignore", invalid="ignore"):
        total = values.sum()  # native precision: one pass at memory speed
    if np.isfinite(total):
        return True
    return bool(np.isfinite(values).all())  # an overflowing sum of finite values


_IEEE_VIEWS = {"F64": "<f8", "F32": "<f4", "F16": "<f2"}


def finite_bytes(raw: np.ndarray, dtype: str) -> bool:
    """`finite` of a plain float tensor's stored bytes (uint8, any slice of whole values), without
    decoding them; True for other dtypes."""
    if dtype == "BF16":
        return not bool(np.any((raw.view("<u2") & 0x7F80) == 0x7F80))  # exponent all ones: Inf or NaN
    view = _IEEE_VIEWS.get(dtype)
    return True if view is None else finite(raw.view(view))


def canonical_key(values: np.ndarray, shape: tuple[int, ...], digest: bytes | None = None) -> str:
    """L2 key of a block's canonical values. `digest`: BLAKE3 of those bytes if already known."""
    if digest is None:
        digest = blake3.blake3(memoryview(np.ascontiguousarray(values).reshape(-1).view(np.uint8))).digest()
    head = f"L2|{values.dtype.str}|{','.join(map(str, shape))}|".encode()
    return blake3.blake3(head + digest).hexdigest()


@lru_cache(maxsize=64)
def _probes(n: int, k: int, salt: int) -> np.ndarray:
    """Seeded Gaussian probe inputs (n, k) float64, the same for every block of width n (read-only)."""
    p = np.random.default_rng([salt, n, k]).standard_normal((n, k))
    p.setflags(write=False)
    return p


def round_bits(y: np.ndarray, bits: int) -> np.ndarray:
    """Round to `bits` significant bits: int64 (..., 2) of (mantissa, exponent)."""
    m, e = np.frexp(y)
    q = np.rint(m * float(1 << bits)).astype(np.int64)
    e = np.where(q == 0, 0, e).astype(np.int64)
    return np.stack([q, e], axis=-1)


def behaviour(values: np.ndarray, plan_: BlockPlan) -> np.ndarray:
    """Outputs of a whole tensor's rows (or elements) on the seeded probes.

    Returns:
        ``rows`` mode: (total_rows, L3_PROBES) float64 = values @ probes;
        ``flat`` mode: (numel, L3_PROBES) float64 = values[:, None] * probes.
    """
    if plan_.mode == "rows":
        mat = values.reshape(plan_.total, plan_.width).astype(np.float64)
        return mat @ _probes(plan_.width, L3_PROBES, 3)
    flat = values.reshape(-1).astype(np.float64)
    return flat[:, None] * _probes(plan_.width, L3_PROBES, 3)[np.arange(len(flat)) % plan_.width]


def behaviour_keys(values: np.ndarray, plan_: BlockPlan, bits: int = 12) -> list[str]:
    """L3 key of every block of a tensor: BLAKE3 of its probe outputs rounded to `bits` bits."""
    out = round_bits(behaviour(values, plan_), bits)
    keys = []
    for i in range(plan_.count):
        lo, hi = (i * plan_.rows, i * plan_.rows + plan_.shape(i)[0]) if plan_.mode == "rows" \
            else (i * plan_.width, i * plan_.width + plan_.shape(i)[0])
        head = f"L3|{bits}|{','.join(map(str, plan_.shape(i)))}|".encode()
        keys.append(blake3.blake3(head + out[lo:hi].tobytes()).hexdigest())
    return keys


def vector_behaviour(values: np.ndarray, bits: int = 12) -> bytes:
    """L3 outputs of one flat block (its values times seeded probe values), rounded: bytes."""
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    return round_bits(flat[:, None] * _probes(len(flat), L3_PROBES, 3), bits).tobytes()


def signatures(blocks: list[np.ndarray], hasher: MinHasher, universe: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """L4 MinHash signatures of blocks' ternary forms, and their shingle sets.

    Args:
        blocks: canonical values per block (any shapes, at most universe // 2 elements each).
        hasher: the pool's `MinHasher`.
        universe: 2 x the pool's block size (signed positions).

    Returns:
        ((n, num_perm) signatures, shingle id arrays).
    """
    if not blocks:
        return np.zeros((0, hasher.num_perm), hasher.dtype), []
    shingles: list[np.ndarray] = [np.zeros(0, np.int64)] * len(blocks)
    by_size: dict[int, list[int]] = {}
    for i, b in enumerate(blocks):
        by_size.setdefault(b.size, []).append(i)
    for members in by_size.values():  # one array operation per block size
        mat = np.stack([blocks[i].reshape(-1) for i in members]).astype(np.float32)  # (n, E)
        scale = np.abs(mat).mean(axis=1, keepdims=True)
        trits = np.clip(np.rint(mat / np.where(scale > 0, scale, 1.0)), -1, 1).astype(np.int8)
        trits[scale[:, 0] == 0] = 0
        rows, pos = np.nonzero(trits)
        ids = 2 * pos + (trits[rows, pos] > 0)
        lengths = np.bincount(rows, minlength=len(members))
        for i, ids_i in zip(members, np.split(ids, np.cumsum(lengths)[:-1])):
            shingles[i] = ids_i
    ids = np.concatenate(shingles)
    return hasher.signatures_of_ids(ids, [len(x) for x in shingles], universe), shingles


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two blocks' values (1.0 for two zero blocks)."""
    x, y = a.reshape(-1).astype(np.float64), b.reshape(-1).astype(np.float64)
    nx, ny = np.linalg.norm(x), np.linalg.norm(y)
    if nx == 0 or ny == 0:
        return 1.0 if nx == ny else 0.0
    return float(x @ y / (nx * ny))


def shadow_error(block: np.ndarray, substitute: np.ndarray) -> float:
    """Relative change of the layer's outputs on seeded probes when `substitute` replaces `block`.

    The rows the block holds are the only outputs of the layer that change, so this is
    ||(S - B) x|| / ||B x|| over the probes x (element-wise for 1-D blocks).
    """
    if block.ndim == 2:
        p = _probes(block.shape[1], SHADOW_PROBES, 7)
        y, d = block.astype(np.float64) @ p, (substitute.astype(np.float64) - block) @ p
    else:
        p = _probes(block.shape[0], SHADOW_PROBES, 7)
        y = block.astype(np.float64)[:, None] * p
        d = (substitute.astype(np.float64) - block)[:, None] * p
    ny = np.linalg.norm(y)
    nd = np.linalg.norm(d)
    return float(nd / ny) if ny > 0 else (0.0 if nd == 0 else float("inf"))


def xor_delta(values: np.ndarray, base: np.ndarray) -> bytes:
    """Lossless delta of canonical values against a base of the same shape and dtype: XOR of bits."""
    kind = np.uint64 if values.dtype == np.float64 else np.uint32
    return (np.ascontiguousarray(values).view(kind) ^ np.ascontiguousarray(base).view(kind)).tobytes()


def delta_may_fit(delta: bytes, limit: float) -> bool:
    """Cheap bound before compressing: a delta can only shrink to `limit` bytes if at least
    (size - limit) of its bytes are zero (XOR deltas of close values are zero in their high bytes)."""
    arr = np.frombuffer(delta, np.uint8)
    return int(np.count_nonzero(arr)) <= 1.25 * limit


def apply_delta(base: np.ndarray, delta: bytes) -> np.ndarray:
    """Inverse of `xor_delta`: the values (same shape and dtype as `base`)."""
    kind = np.uint64 if base.dtype == np.float64 else np.uint32
    bits = np.ascontiguousarray(base).view(kind) ^ np.frombuffer(delta, dtype=kind).reshape(base.shape)
    return bits.view(base.dtype)
