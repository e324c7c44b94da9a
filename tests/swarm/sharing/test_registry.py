from __future__ import annotations

import random

from swarm.sharing.registry import ExperienceRegistry


def _filled(n: int) -> ExperienceRegistry:
    reg = ExperienceRegistry()
    for start in range(0, n, 1000):  # appended in batches, as colonies share them
        reg.append([f"entry-{i}".encode() * 3 for i in range(start, min(n, start + 1000))])
    return reg


def test_every_proof_of_10k_entries_verifies_and_any_changed_byte_fails():
    reg = _filled(10_000)
    root = reg.root()
    rng = random.Random(0)
    for i in range(len(reg)):
        rec, path = reg.record(i), reg.proof(i)
        assert reg.verify(rec, path, root)
        pos = rng.randrange(len(rec))
        changed = rec[:pos] + bytes([rec[pos] ^ (1 << rng.randrange(8))]) + rec[pos + 1:]
        assert not reg.verify(changed, path, root)
    assert not reg.verify(reg.record(0), reg.proof(1), root)  # a proof for another entry
    assert not reg.verify(reg.record(0), [("L", "zz")], root)  # a malformed proof


def test_roots_of_prefixes_agree_and_tampering_is_detected():
    reg = _filled(2500)
    other = _filled(1500)  # another colony that has seen the first 1,500 records
    assert reg.agrees_with(other.root(), 1500)
    assert not reg.agrees_with(other.root(), 1499)
    assert reg.root() != other.root()
    assert reg.audit() == []
    reg._records[1234] = reg._records[1234][:-1] + b"X"  # tamper with one stored byte
    assert reg.audit() == [1234]
    assert not reg.verify(reg.record(1234), reg.proof(1234), reg.root())
