"""genome.minhash: signatures identical to datasketch's, LSH identical to MinHashLSH, and the
candidate probability 1 - (1 - J^5)^20 within sampling error."""

from __future__ import annotations

import numpy as np
import pytest
from datasketch import MinHash, MinHashLSH

from genome.minhash import (
    LSHIndex,
    MinHasher,
    candidate_probability,
    from_datasketch,
    id_bytes,
    jaccard,
    signed_shingles,
    ternary,
)


@pytest.mark.parametrize("scheme", ["affine32", "legacy"])
def test_signatures_match_datasketch_on_random_sets(scheme):
    rng = np.random.default_rng(1)
    hasher = MinHasher(num_perm=100, seed=7, scheme=scheme)
    sets = [rng.choice(8192, size=int(rng.integers(0, 3000)), replace=False) for _ in range(40)]
    ours = hasher.signatures_of_ids(np.concatenate(sets), [len(s) for s in sets], 8192)
    words = [[f"w{rng.integers(10**6)}".encode() for _ in range(int(rng.integers(1, 60)))] for _ in range(10)]
    for s, sig in zip(sets, ours):
        ref = MinHash(num_perm=100, seed=7, scheme=scheme)
        ref.update_batch([id_bytes(i) for i in s])
        np.testing.assert_array_equal(sig, from_datasketch(ref))
    for w in words:  # arbitrary byte elements, hashed one by one
        ref = MinHash(num_perm=100, seed=7, scheme=scheme)
        ref.update_batch(w)
        np.testing.assert_array_equal(hasher.signature(w), from_datasketch(ref))
    # convertible both ways: datasketch's own estimate from our signatures
    a, b = hasher.to_datasketch(ours[1]), hasher.to_datasketch(ours[2])
    assert a.jaccard(b) == pytest.approx(float((ours[1] == ours[2]).mean()))
    np.testing.assert_array_equal(from_datasketch(a), ours[1])


def test_lsh_candidates_match_datasketch_minhashlsh():
    rng = np.random.default_rng(2)
    hasher = MinHasher()
    base = rng.choice(8192, 400, replace=False)
    sets = [np.unique(np.concatenate([base[: int(rng.integers(50, 400))], rng.choice(8192, 100)]))
            for _ in range(60)]
    sigs = hasher.signatures_of_ids(np.concatenate(sets), [len(s) for s in sets], 8192)
    ours, ref = LSHIndex(20, 5), MinHashLSH(num_perm=100, params=(20, 5))
    for i, sig in enumerate(sigs[:40]):
        ours.insert(i, sig)
        ref.insert(i, hasher.to_datasketch(sig))
    hits = 0
    for sig in sigs[40:]:
        got = ours.query(sig)
        assert got == set(ref.query(hasher.to_datasketch(sig)))
        hits += len(got)
    assert hits > 0  # overlapping sets do become candidates
    ours.remove(0)
    assert 0 not in ours and len(ours) == 39


def test_candidate_probability_follows_the_s_curve():
    """Pairs of sets with exact Jaccard J become candidates with probability 1-(1-J^5)^20."""
    rng = np.random.default_rng(3)
    hasher, a, pairs = MinHasher(), 100, 300
    for shared in (40, 67, 82, 89):  # J = 0.25, 0.50, 0.69, 0.80
        sets = []
        for _ in range(pairs):
            ids = rng.choice(8192, 2 * a - shared, replace=False)
            sets += [ids[:a], np.concatenate([ids[:shared], ids[a:]])]
        j = shared / (2 * a - shared)
        assert jaccard(np.sort(sets[0]), np.sort(sets[1])) == pytest.approx(j)
        sigs = hasher.signatures_of_ids(np.concatenate(sets), [len(s) for s in sets], 8192)
        rows = sigs.reshape(pairs, 2, 20, 5)
        candidate = (rows[:, 0] == rows[:, 1]).all(axis=2).any(axis=1)  # any band equal
        p = float(candidate_probability(j))
        sd = np.sqrt(p * (1 - p) / pairs)
        assert abs(candidate.mean() - p) <= 4 * sd + 0.01, (j, candidate.mean(), p)
    assert candidate_probability(0.5) == pytest.approx(0.47, abs=0.005)
    assert candidate_probability(0.8) == pytest.approx(0.9996, abs=1e-4)


def test_signed_shingles_keep_unrelated_ternary_blocks_apart():
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal(4096), rng.standard_normal(4096)
    tx = ternary(x)
    assert set(np.unique(tx)) == {-1, 0, 1}
    sx, sy = signed_shingles(tx), signed_shingles(ternary(y))
    assert 0.15 < jaccard(sx, sy) < 0.25  # unrelated: J about 0.2, candidate probability under 1%
    close = signed_shingles(ternary(x + 0.05 * y))
    assert jaccard(sx, close) > 0.8
