"""Merkle trees over gene leaves: a root, inclusion proofs, and proof checking.

Leaves and nodes are domain-separated BLAKE3 hashes (RFC 6962 style): leaf = H(0x00 || data),
node = H(0x01 || left || right). A level with an odd number of nodes carries its last node up
unchanged, so a proof lists only real siblings.
"""

from __future__ import annotations

from collections.abc import Sequence

import blake3

EMPTY_ROOT = blake3.blake3(b"\x02empty").hexdigest()


def leaf_hash(data: bytes) -> bytes:
    """The leaf hash of one item's bytes (32 bytes)."""
    return blake3.blake3(b"\x00" + data).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return blake3.blake3(b"\x01" + left + right).digest()


def levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """Every level of the tree, leaves first, root last."""
    out = [list(leaves)]
    while len(out[-1]) > 1:
        cur = out[-1]
        nxt = [_node(cur[i], cur[i + 1]) for i in range(0, len(cur) - 1, 2)]
        if len(cur) % 2:
            nxt.append(cur[-1])
        out.append(nxt)
    return out


def root(leaves: Sequence[bytes]) -> str:
    """Hex root of the leaves (in order); `EMPTY_ROOT` for none."""
    if not leaves:
        return EMPTY_ROOT
    return levels(leaves)[-1][0].hex()


def proof(leaves: Sequence[bytes], index: int) -> list[tuple[str, str]]:
    """Inclusion proof of leaf `index`: (side of the sibling, "L" or "R"; sibling hex) per level."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf {index} out of range (0..{len(leaves) - 1})")
    path = []
    for level in levels(leaves)[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            path.append(("L" if sibling < index else "R", level[sibling].hex()))
        index //= 2
    return path


def verify(leaf: bytes, path: Sequence[tuple[str, str]], expected_root: str) -> bool:
    """True if `leaf` with `path` hashes up to `expected_root`."""
    h = leaf
    for side, sibling in path:
        s = bytes.fromhex(sibling)
        h = _node(s, h) if side == "L" else _node(h, s)
    return h.hex() == expected_root
