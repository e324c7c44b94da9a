"""Merkle trees over leaves: a root, inclusion proofs, and proof checking.

Leaves and nodes are domain-separated hashes (RFC 6962 style): leaf = H(0x00 || data),
node = H(0x01 || left || right). A level with an odd number of nodes carries its last node up
unchanged, so a proof lists only real siblings. H is BLAKE3 (the gene pool's default) or SHA-256
(`algo="sha256"`, the swarm's experience registry).

`levels` builds the whole tree once; `proof_from_levels` then answers any number of proofs in
O(log n) each (the registry proves every one of 10k entries without rebuilding the tree).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import blake3

_HASHES: dict[str, Callable[[bytes], bytes]] = {
    "blake3": lambda data: blake3.blake3(data).digest(),
    "sha256": lambda data: hashlib.sha256(data).digest(),
}
EMPTY_ROOT = blake3.blake3(b"\x02empty").hexdigest()


def _hash(algo: str) -> Callable[[bytes], bytes]:
    try:
        return _HASHES[algo]
    except KeyError:
        raise ValueError(f"unknown Merkle hash {algo!r}; expected one of {', '.join(_HASHES)}") from None


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
