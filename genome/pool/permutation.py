"""Permutation detection: is a new 2-D tensor (or vector) a stored tensor with its rows or columns reordered?

A layout change (hidden units reordered) leaves every row, or every column, intact. Each lane
(row or column) of a tensor's bit pattern gets an xxh3-64 digest; the sorted digests, hashed with
the tensor's shape and the axis, are a multiset signature that a permutation along that axis does
not change. A pool records the signatures of its tensors (`rowsigs`); a new tensor with the same
signature is matched lane by lane against the stored tensor's values, and the permutation found
is checked exactly before the ingest stores the tensor as the stored tensor's genes plus that
permutation.
"""

from __future__ import annotations

from typing import Any

import blake3
import numpy as np

from genome.pool.rebuild import tensor_values

MAX_PERM_LANES = 8192  # rows/columns beyond this (embedding tables) are not checked for permutations


def lane_keys(bits: np.ndarray, axis: int) -> np.ndarray:
    """An xxh3-64 digest of every row (axis 0) or column (axis 1) of a bit-pattern matrix: (n,)."""
    import xxhash

    lanes = np.ascontiguousarray(bits if axis == 0 else bits.T)
    return np.fromiter((xxhash.xxh3_64_intdigest(row) for row in lanes), np.uint64, len(lanes))


def multiset_sig(keys: np.ndarray, shape: tuple[int, ...], axis: int) -> str:
    return blake3.blake3(f"perm|{axis}|{shape}|".encode() + np.sort(keys).tobytes()).hexdigest()


class Permutations:
    """The multiset signatures of a pool's tensors, and the search for a stored tensor a new one permutes."""

    def __init__(self, pool: Any, load: bool) -> None:
        self.pool = pool
        self.rowsigs: dict[tuple[str, int], list[tuple[int, int]]] = {}
        if load:
            for sig, axis, model, tensor in pool.db.execute("SELECT sig, axis, model, tensor FROM rowsigs"):
                self.rowsigs.setdefault((sig, axis), []).append((model, tensor))

    def find(self, shape: tuple[int, ...], mat: np.ndarray, look: bool, axes: tuple[int, ...]
             ) -> tuple[list[tuple[str, int]], tuple[int, int, np.ndarray, int] | None]:
        """This tensor's row/column multiset signatures; if `look`, a stored tensor it permutes.

        Returns:
            ([(signature, axis)] to record with the tensor, and (model, tensor, permutation, axis)
            of the stored tensor, or None).
        """
        kind = np.uint64 if mat.dtype == np.float64 else np.uint32
        bits = np.ascontiguousarray(mat).view(kind)
        sigs: list[tuple[str, int]] = []
        for axis in axes:
            if bits.shape[axis] > MAX_PERM_LANES:
                continue
            keys = lane_keys(bits, axis)
            sig = multiset_sig(keys, shape, axis)
            sigs.append((sig, axis))
            if not look:
                continue
            for model, tensor in self.rowsigs.get((sig, axis), []):
                found = self.match(model, tensor, bits, keys, axis, kind)
                if found is not None:
                    return sigs, (model, tensor, found, axis)
        return sigs, None

    def match(self, model, tensor, bits, keys, axis, kind) -> np.ndarray | None:
        """The order of the stored tensor's lanes along `axis` that gives `bits`, or None."""
        own_perm, own_axis = self.pool.db.execute("SELECT perm, perm_axis FROM tensors WHERE model = ? AND idx = ?",
                                                  (model, tensor)).fetchone()
        if own_perm is not None and own_axis != axis:
            return None
        cand = tensor_values(self.pool, model, tensor)
        if cand.size != bits.size or cand.dtype.itemsize != bits.dtype.itemsize:
            return None
        cand = cand.reshape(bits.shape)
        cbits = np.ascontiguousarray(cand).view(kind)
        ck = lane_keys(cbits, axis)
        perm = np.empty(bits.shape[axis], np.int64)
        perm[np.argsort(keys, kind="stable")] = np.argsort(ck, kind="stable")
        if not np.array_equal(np.take(cbits, perm, axis=axis), bits):
            return None
        if own_perm is not None:  # stored relative to the candidate's own genes
            perm = np.frombuffer(self.pool.reader.read(own_perm), np.int64)[perm]
        return perm
