"""Merkle trees over leaves: a root, inclusion proofs, and proof checking.

Leaves and nodes are domain-separated hashes (RFC 6962 style): leaf = H(0x00 || data),
node = H(0x01 || left || right). A level with an odd number of nodes carries its last node up
unchanged, so a proof lists only real siblings. H is BLAKE3 (the gene pool's default) or SHA-256
(`algo="sha256"`, the swarm's experience registry).

`levels` builds the whole tree once; `proof_from_levels` then answers any number of proofs in
O(log n) each (the registry proves every one of 10k entries without rebuilding the tree).
Tree levels and `leaf_hashes` lay their inputs out as one array and hash slices of it: one
hash call per node, no per-node concatenation (a gene pool batch holds thousands of leaves).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import blake3
import numpy as np

#: hash constructors (called on bytes or a memoryview, `.digest()` gives 32 bytes).
_HASHES: dict[str, Callable[[Any], Any]] = {"blake3": blake3.blake3, "sha256": hashlib.sha256}
EMPTY_ROOT = blake3.blake3(b"\x02empty").hexdigest()


def _constructor(algo: str) -> Callable[[Any], Any]:
    try:
        return _HASHES[algo]
    except KeyError:
        raise ValueError(f"unknown Merkle hash {algo!r}; expected one of {', '.join(_HASHES)}") from None


def _hash(algo: str) -> Callable[[bytes], bytes]:
    new = _constructor(algo)
    return lambda data: new(data).digest()


def _rows(buf: np.ndarray, algo: str) -> list[bytes]:
    """The hash of every row of a C-contiguous (n, width) uint8 array."""
    new, width = _constructor(algo), buf.shape[1]
    flat = memoryview(buf.tobytes())
    return [new(flat[i:i + width]).digest() for i in range(0, len(flat), width)]


def leaf_hashes(items: np.ndarray, algo: str = "blake3") -> list[bytes]:
    """`leaf_hash` of every row of a (n, width) uint8 array of fixed-width items."""
    buf = np.empty((items.shape[0], items.shape[1] + 1), np.uint8)
    buf[:, 0] = 0
    buf[:, 1:] = items
    return _rows(buf, algo)


def empty_root(algo: str = "blake3") -> str:
    """Hex root of a tree with no leaves."""
    return _hash(algo)(b"\x02empty").hex()


def leaf_hash(data: bytes, algo: str = "blake3") -> bytes:
    """The leaf hash of one item's bytes (32 bytes)."""
    return _hash(algo)(b"\x00" + data)


def _node(left: bytes, right: bytes, algo: str = "blake3") -> bytes:
    return _hash(algo)(b"\x01" + left + right)


def levels(leaves: Sequence[bytes], algo: str = "blake3") -> list[list[bytes]]:
    """Every level of the tree, leaves first, root last."""
    h = _hash(algo)
    out = [list(leaves)]
    while len(out[-1]) > 1:
        cur = out[-1]
        pairs = len(cur) // 2
        if set(map(len, cur)) == {32}:  # hashes: one array of (0x01, left, right) rows
            buf = np.empty((pairs, 65), np.uint8)
            buf[:, 0] = 1
            buf[:, 1:] = np.frombuffer(b"".join(cur[:2 * pairs]), np.uint8).reshape(pairs, 64)
            nxt = _rows(buf, algo)
        else:
            nxt = [h(b"\x01" + cur[i] + cur[i + 1]) for i in range(0, len(cur) - 1, 2)]
        if len(cur) % 2:
            nxt.append(cur[-1])
        out.append(nxt)
    return out


def root(leaves: Sequence[bytes], algo: str = "blake3") -> str:
    """Hex root of the leaves (in order); the empty root for none."""
    if not leaves:
        return empty_root(algo)
    return levels(leaves, algo)[-1][0].hex()


def proof_from_levels(tree: list[list[bytes]], index: int) -> list[tuple[str, str]]:
    """Inclusion proof of leaf `index` from a tree built by `levels`."""
    if not 0 <= index < len(tree[0]):
        raise IndexError(f"leaf {index} out of range (0..{len(tree[0]) - 1})")
    path = []
    for level in tree[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            path.append(("L" if sibling < index else "R", level[sibling].hex()))
        index //= 2
    return path


def proof(leaves: Sequence[bytes], index: int, algo: str = "blake3") -> list[tuple[str, str]]:
    """Inclusion proof of leaf `index`: (side of the sibling, "L" or "R"; sibling hex) per level."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf {index} out of range (0..{len(leaves) - 1})")
    return proof_from_levels(levels(leaves, algo), index)


def verify(leaf: bytes, path: Sequence[tuple[str, str]], expected_root: str, algo: str = "blake3") -> bool:
    """True if `leaf` with `path` hashes up to `expected_root`."""
    h = leaf
    for side, sibling in path:
        s = bytes.fromhex(sibling)
        h = _node(s, h, algo) if side == "L" else _node(h, s, algo)
    return h.hex() == expected_root
