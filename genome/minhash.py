"""MinHash signatures identical to datasketch's, computed for many sets at once, and LSH banding.

A signature is, for each of `num_perm` permutations pi_j, the minimum of pi_j(h(x)) over the set's
elements x, where h is a 32-bit hash of the element's bytes (datasketch's default: the first four
bytes of SHA-1). The permutations are datasketch's, drawn from ``RandomState(seed)``:

- ``affine32`` (datasketch >= 2.0 default): pi_j(h) = a_j * fmix32(h) + b_j mod 2^32, a_j odd;
- ``legacy`` (datasketch < 2.0): pi_j(h) = ((a_j * h + b_j) mod (2^61 - 1)) & (2^32 - 1).

Same elements, `num_perm`, seed, scheme and hash function give bit-identical signatures; convert
with `to_datasketch` / `from_datasketch`. The speed comes from three things datasketch's per-set
``update_batch`` cannot do: hashing each distinct element once (sets of ids drawn from a small
universe, such as the signed positions of a 4096-trit block, use a precomputed (U, num_perm)
table), applying the permutations to many sets in one array operation, and taking the per-set
minimum with one ``np.minimum.reduceat``.

LSH: a signature is cut into `bands` bands of `rows` values; two sets are candidates when any band
is equal. Their probability of becoming candidates is 1 - (1 - J^rows)^bands for Jaccard J.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Iterable, Sequence

import numpy as np

SCHEMES = ("affine32", "legacy")
_MERSENNE = np.uint64((1 << 61) - 1)
_MAX32 = np.uint64((1 << 32) - 1)
_CHUNK_ELEMENTS = 1 << 20  # elements permuted at once: (chunk, num_perm) uint32 stays ~ 400 MB / 1024


def sha1_hash32(data: bytes) -> int:
    """datasketch's default element hash: the first 4 bytes of SHA-1, little-endian."""
    return int.from_bytes(hashlib.sha1(data).digest()[:4], "little")


def id_bytes(i: int) -> bytes:
    """The byte form of an integer element id fed to the hash function (4 bytes little-endian)."""
    return int(i).to_bytes(4, "little")


def fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser (datasketch pre-mixes with it): uint32 -> uint32."""
    h = h.astype(np.uint32, copy=True)
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return h


def candidate_probability(jaccard: float | np.ndarray, bands: int = 20, rows: int = 5) -> float | np.ndarray:
    """P(two sets with this Jaccard share a band) = 1 - (1 - J^rows)^bands."""
    return 1.0 - (1.0 - np.asarray(jaccard, dtype=np.float64) ** rows) ** bands


class MinHasher:
    """Vectorised MinHash with datasketch's permutations.

    Args:
        num_perm: permutations (signature length); 100 = 20 bands x 5 rows.
        seed: datasketch's ``seed``.
        scheme: ``affine32`` (datasketch 2.x default) or ``legacy``.
        hashfunc: element bytes -> 32-bit int; datasketch's default SHA-1 hash when None.
    """

    def __init__(self, num_perm: int = 100, seed: int = 1, scheme: str = "affine32",
                 hashfunc: Callable[[bytes], int] | None = None) -> None:
        if scheme not in SCHEMES:
            raise ValueError(f"MinHash scheme {scheme!r}: expected one of {SCHEMES}")
        if num_perm < 1:
            raise ValueError(f"num_perm must be positive, got {num_perm}")
        self.num_perm, self.seed, self.scheme = num_perm, seed, scheme
        self.hashfunc = hashfunc or sha1_hash32
        gen = np.random.RandomState(seed)
        if scheme == "legacy":
            ab = np.array([(gen.randint(1, _MERSENNE, dtype=np.uint64), gen.randint(0, _MERSENNE, dtype=np.uint64))
                           for _ in range(num_perm)], dtype=np.uint64).T
            self.a, self.b = ab[0], ab[1]  # (num_perm,) uint64
            self.dtype: type = np.uint64
        else:
            self.a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
            self.b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
            self.dtype = np.uint32
        self._tables: dict = {}

    @property
    def empty(self) -> np.ndarray:
        """The signature of the empty set: (num_perm,) all maximal."""
        return np.full(self.num_perm, _MAX32 if self.scheme == "legacy" else np.uint32(0xFFFFFFFF), self.dtype)

    def permute(self, hashes: np.ndarray) -> np.ndarray:
        """Apply every permutation to element hashes: (n,) -> (n, num_perm)."""
        if self.scheme == "legacy":
            hv = hashes.astype(np.uint64).reshape(-1, 1)
            return ((hv * self.a + self.b) % _MERSENNE) & _MAX32  # uint64 products wrap, as datasketch's do
        hv = fmix32(hashes.astype(np.uint32)).reshape(-1, 1)
        return hv * self.a + self.b  # uint32 arithmetic: wrap-around is the mod 2^32

    def hash_items(self, items: Iterable[bytes]) -> np.ndarray:
        """32-bit hashes of element bytes with `hashfunc`: (n,) uint64."""
        return np.fromiter((self.hashfunc(x) for x in items), dtype=np.uint64)

    def universe(self, size: int) -> np.ndarray:
        """Permuted hashes of the ids 0..size-1 (as `id_bytes`), cached: (size, num_perm)."""
        table = self._tables.get(size)
        if table is None:
            table = self.permute(self.hash_items(id_bytes(i) for i in range(size)))
            self._tables[size] = table
        return table

    def signature(self, items: Iterable[bytes]) -> np.ndarray:
        """One set's signature from its elements' bytes: (num_perm,)."""
        hv = self.hash_items(items)
        if len(hv) == 0:
            return self.empty
        return self.permute(hv).min(axis=0)

    def signatures_from_hashes(self, hashes: np.ndarray, lengths: Sequence[int]) -> np.ndarray:
        """Signatures of many sets given their elements' 32-bit hashes, concatenated.

        Args:
            hashes: (sum(lengths),) element hashes, set after set.
            lengths: elements per set.

        Returns:
            (len(lengths), num_perm) signatures.
        """
        return self._reduce(lambda lo, hi: self.permute(hashes[lo:hi]), lengths)

    def signatures_of_ids(self, ids: np.ndarray, lengths: Sequence[int], universe: int) -> np.ndarray:
        """Signatures of many sets of integer ids in [0, universe), using the cached table.

        Identical to datasketch fed ``[id_bytes(i) for i in set]``. Each permutation's universe is
        pre-sorted by permuted value, so a set's minimum is the first sorted id it contains: with
        sets holding a fraction d of the universe, about 1/d probes per permutation instead of
        len(set). Permutations not settled within the probe window fall back to the full minimum.

        Args:
            ids: (sum(lengths),) distinct int ids per set, set after set.
            lengths: elements per set.
            universe: exclusive upper bound of the ids.

        Returns:
            (len(lengths), num_perm) signatures.
        """
        table, order, ranked = self._sorted_universe(universe)
        ids = np.asarray(ids, dtype=np.int64)
        lengths = np.asarray(lengths, dtype=np.int64)
        n = len(lengths)
        out = np.empty((n, self.num_perm), self.dtype)
        out[:] = self.empty
        if n == 0 or len(ids) == 0:
            return out
        density = max(float(lengths.mean()) / universe, 1.0 / universe)
        window = int(min(universe, max(16, np.ceil(12.0 / density))))
        starts = np.concatenate([[0], np.cumsum(lengths)])
        per_chunk = max(1, _CHUNK_ELEMENTS // (window * self.num_perm // 8 + universe))
        probe = order[:window]  # (W, num_perm) ids in increasing permuted value
        cols = np.arange(self.num_perm)
        for lo in range(0, n, per_chunk):
            hi = min(n, lo + per_chunk)
            mask = np.zeros((hi - lo, universe), bool)
            rows = np.repeat(np.arange(hi - lo), lengths[lo:hi])
            mask[rows, ids[starts[lo]:starts[hi]]] = True
            hit = mask[:, probe]  # (sets, W, num_perm)
            first = hit.argmax(axis=1)  # (sets, num_perm)
            found = np.take_along_axis(hit, first[:, None, :], axis=1)[:, 0, :]
            out[lo:hi] = np.where(found, ranked[first, cols], out[lo:hi])
            for s, j in zip(*np.nonzero(~found & (lengths[lo:hi, None] > 0))):  # rare: sparse sets
                members = ids[starts[lo + s]:starts[lo + s + 1]]
                out[lo + s, j] = table[members, j].min()
        return out

    def _sorted_universe(self, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(table (U, P), ids sorted by permuted value per permutation (U, P), sorted values (U, P))."""
        table = self.universe(size)
        key = ("sorted", size)
        cached = self._tables.get(key)  # type: ignore[call-overload]
        if cached is None:
            order = np.argsort(table, axis=0, kind="stable")
            cached = (order, np.take_along_axis(table, order, axis=0))
            self._tables[key] = cached  # type: ignore[index]
        return table, cached[0], cached[1]

    def _reduce(self, permuted: Callable[[int, int], np.ndarray], lengths: Sequence[int]) -> np.ndarray:
        lengths = np.asarray(lengths, dtype=np.int64)
        out = np.empty((len(lengths), self.num_perm), self.dtype)
        out[:] = self.empty
        starts = np.concatenate([[0], np.cumsum(lengths)])
        i = 0
        while i < len(lengths):  # chunks of whole sets, each chunk one reduceat
            j = i + 1
            while j < len(lengths) and starts[j + 1] - starts[i] <= _CHUNK_ELEMENTS:
                j += 1
            lo, hi = int(starts[i]), int(starts[j])
            nonempty = np.nonzero(lengths[i:j])[0]
            if hi > lo and len(nonempty):
                block = permuted(lo, hi)  # (elements, num_perm)
                out[i + nonempty] = np.minimum.reduceat(block, starts[i:j][nonempty] - lo, axis=0)
            i = j
        return out

    # ---- datasketch interop ----------------------------------------------------------------
    def to_datasketch(self, signature: np.ndarray) -> object:
        """A ``datasketch.MinHash`` holding this signature (same seed, scheme and hashfunc)."""
        from datasketch import MinHash

        return MinHash(seed=self.seed, hashfunc=self.hashfunc, hashvalues=np.asarray(signature, self.dtype),
                       scheme=self.scheme)

    def datasketch(self) -> object:
        """An empty ``datasketch.MinHash`` with this hasher's settings (a reference to compare with)."""
        from datasketch import MinHash

        return MinHash(num_perm=self.num_perm, seed=self.seed, hashfunc=self.hashfunc, scheme=self.scheme)


def from_datasketch(minhash: object) -> np.ndarray:
    """The signature held by a ``datasketch.MinHash``: (num_perm,)."""
    return np.asarray(minhash.hashvalues).copy()  # type: ignore[attr-defined]


class LSHIndex:
    """Banded LSH over signatures: `bands` x `rows` values; candidates share at least one band.

    Gives the same candidates as ``datasketch.MinHashLSH(num_perm=bands*rows, params=(bands, rows))``.
    """

    def __init__(self, bands: int = 20, rows: int = 5) -> None:
        self.bands, self.rows = bands, rows
        self._buckets: list[dict[bytes, set[Hashable]]] = [{} for _ in range(bands)]
        self._keys: dict[Hashable, list[bytes]] = {}

    def band_keys(self, signature: np.ndarray) -> list[bytes]:
        """The `bands` bucket keys of one signature."""
        sig = np.ascontiguousarray(signature[: self.bands * self.rows])
        if len(sig) < self.bands * self.rows:
            raise ValueError(f"signature of {len(signature)} values is shorter than {self.bands} x {self.rows}")
        raw = sig.tobytes()
        width = len(raw) // self.bands
        return [raw[i * width:(i + 1) * width] for i in range(self.bands)]

    def insert(self, key: Hashable, signature: np.ndarray) -> None:
        """Add `key` (replacing an earlier entry with the same key)."""
        if key in self._keys:
            self.remove(key)
        bkeys = self.band_keys(signature)
        for bucket, bkey in zip(self._buckets, bkeys):
            bucket.setdefault(bkey, set()).add(key)
        self._keys[key] = bkeys

    def remove(self, key: Hashable) -> None:
        """Drop `key`; unknown keys are ignored."""
        for bucket, bkey in zip(self._buckets, self._keys.pop(key, [])):
            members = bucket.get(bkey)
            if members is not None:
                members.discard(key)
                if not members:
                    del bucket[bkey]

    def query(self, signature: np.ndarray) -> set[Hashable]:
        """Keys sharing at least one band with `signature`."""
        out: set[Hashable] = set()
        for bucket, bkey in zip(self._buckets, self.band_keys(signature)):
            out.update(bucket.get(bkey, ()))
        return out

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._keys


# ---- ternary blocks -----------------------------------------------------------------------
def ternary(values: np.ndarray) -> np.ndarray:
    """BitNet absmean trits of a block: int8 in {-1, 0, 1}, same shape (scale = mean |x|)."""
    x = np.asarray(values, dtype=np.float32)
    scale = float(np.abs(x).mean()) if x.size else 0.0
    if scale == 0.0:
        return np.zeros(x.shape, np.int8)
    return np.clip(np.rint(x / scale), -1, 1).astype(np.int8)


def signed_shingles(trits: np.ndarray) -> np.ndarray:
    """Shingle ids of a ternary block: 2 * position + (trit > 0) for every non-zero trit.

    Signed positions keep unrelated blocks apart (Jaccard about 0.2); unsigned non-zero positions
    would make a large share of unrelated blocks LSH candidates.
    """
    flat = trits.reshape(-1)
    pos = np.flatnonzero(flat)
    return 2 * pos + (flat[pos] > 0)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard similarity of two id sets (1.0 for two empty sets)."""
    inter = len(np.intersect1d(a, b, assume_unique=True))
    union = len(a) + len(b) - inter
    return inter / union if union else 1.0
