"""Measurements: sampling cap, determinism, entropy/kurtosis/theta definitions, score and tiers."""

from __future__ import annotations

import numpy as np
import pytest

from genome.formats import TensorInfo
from genome.formats.base import encode_plain
from genome.measure import (
    MAX_SAMPLES,
    Workspace,
    entropy,
    kurtosis,
    measure_tensor,
    measure_values,
    sample_values,
    stratified_indices,
    theta,
    tier,
)


def _info(arr: np.ndarray, dtype: str = "F32") -> TensorInfo:
    return TensorInfo("w", arr.shape, dtype, arr.nbytes)


def test_sampling_is_capped_and_deterministic() -> None:
    x = np.random.default_rng(1).standard_normal(1_000_003).astype(np.float32)
    a = sample_values(x.view(np.uint8), _info(x))
    b = sample_values(x.view(np.uint8), _info(x))
    assert a.size == MAX_SAMPLES and np.array_equal(a, b)
    idx = stratified_indices(1_000_003)
    assert np.all(np.diff(idx) > 0) and idx[-1] < 1_000_003
    small = np.arange(10, dtype=np.float32)
    assert np.array_equal(sample_values(small.view(np.uint8), _info(small)), np.arange(10))


def test_definitions_on_known_distributions() -> None:
    rng = np.random.default_rng(0)
    gauss, unif = rng.standard_normal(100_000), rng.random(100_000)
    assert kurtosis(gauss) == pytest.approx(0.0, abs=0.1)
    assert kurtosis(unif) == pytest.approx(-1.2, abs=0.05)
    assert theta(np.arange(1000.0)) == pytest.approx(0.0, abs=1e-6)  # even spacing
    assert theta(unif) == pytest.approx(45.0, abs=1.0)  # exponential gaps: CV = 1
    assert theta(np.repeat([0.0, 1.0, 2.0], 1000)) > 85  # clumped levels
    assert entropy(unif) > 0.99 and entropy(np.ones(100)) == 0.0
    assert 0 <= theta(gauss) <= 90


def test_score_and_tiers() -> None:
    rng = np.random.default_rng(0)
    healthy = measure_values(rng.standard_normal(50_000))
    assert healthy.tier == "PRISTINE" and healthy.score > 90
    assert measure_values(np.zeros(100)).tier == "DEAD"
    assert measure_values(np.r_[rng.standard_normal(100), np.nan]).tier == "DEAD"
    assert measure_values(np.r_[rng.standard_normal(100), np.inf]).score == 0
    half_dead = measure_values(np.where(rng.random(50_000) < 0.35, 0.0, rng.standard_normal(50_000)))
    assert half_dead.tier in ("HEALTHY", "DEGRADED") and half_dead.score < healthy.score
    assert [tier(s) for s in (95, 90, 70, 69.9, 50, 49.9)] == ["PRISTINE", "HEALTHY", "HEALTHY", "DEGRADED",
                                                                "DEGRADED", "DEAD"]


def test_measure_quantised_and_bf16() -> None:
    import gguf

    vals = np.random.default_rng(0).standard_normal((64, 256)).astype(np.float32)
    raw = gguf.quants.quantize(vals, gguf.GGMLQuantizationType.Q8_0).reshape(-1)
    m = measure_tensor(raw, TensorInfo("q", (64, 256), "Q8_0", raw.nbytes))
    assert m.n_sampled == 64 * 256 and m.tier == "PRISTINE"
    assert m.std == pytest.approx(vals.std(), rel=0.02)
    bf = (vals.view(np.uint32) >> 16).astype(np.uint16)
    m2 = measure_tensor(bf.view(np.uint8).reshape(-1), TensorInfo("b", vals.shape, "BF16", bf.nbytes))
    assert m2.std == pytest.approx(vals.std(), rel=0.01)


@pytest.mark.parametrize("dtype", ["F32", "F16", "BF16", "F64", "I32"])
def test_measure_tensor_matches_plain_measure_values_bit_for_bit(dtype: str) -> None:
    # the fast path (workspace buffers, float32 sort, in-place moments) must not change a bit
    rng = np.random.default_rng(3)
    ws = Workspace()
    for n in (1, 2, 7, 5_000, MAX_SAMPLES + 17, 300_001):
        x = rng.standard_normal(n) * 3.0
        if n > 10:
            x[rng.integers(0, n, 9)] = 0.0
            x[rng.integers(0, n, 4)] = -0.0
            if dtype != "I32":
                x[rng.integers(0, n, 2)] = np.nan if n % 2 else np.inf
        raw = encode_plain(x.astype(np.int32) if dtype == "I32" else x, dtype)
        info = TensorInfo("w", (n,), dtype, raw.nbytes)
        expected = measure_values(sample_values(raw, info)).as_dict()
        assert repr(measure_tensor(raw, info, workspace=ws).as_dict()) == repr(expected)
        assert repr(measure_tensor(raw, info).as_dict()) == repr(expected)
