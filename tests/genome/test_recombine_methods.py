"""Merge methods against values worked out by hand, and every method for shapes, dtypes,
determinism and streaming (chunked) equivalence."""

from __future__ import annotations

import math
import zlib

import pytest
import torch

from genome.errors import BadInput
from genome.recombine.merge import merge_tensors
from genome.recombine.registry import REGISTRY
from genome.recombine.sparsify import kth_largest
from genome.recombine.task import MergeTask, TensorSource

BASE = torch.zeros(2, 3)
# task vectors with distinct magnitudes (no ties at a threshold)
A = torch.tensor([[1.0, -2.0, 3.0], [0.5, 1.5, -0.25]])
B = torch.tensor([[-2.5, 1.25, 0.75], [0.6, -3.0, 2.0]])


def test_ties_trims_elects_sign_and_takes_the_disjoint_mean() -> None:
    # density 0.5 keeps 3 of 6 per model: A keeps 3, -2, 1.5; B keeps -3, -2.5, 2.
    # elected signs: (0,0) only B kept -2.5 (A's 1 < 1.5 trimmed); (0,1) -2 alone; (0,2) 3 alone;
    # (1,0) nothing kept -> 0; (1,1) 1.5 - 3 < 0 -> -3; (1,2) 2 alone.
    out = merge_tensors("ties", [A, B], BASE, [{"weight": 1.0, "density": 0.5}] * 2)
    torch.testing.assert_close(out, torch.tensor([[-2.5, -2.0, 3.0], [0.0, -3.0, 2.0]]))
    # weights: A 3, B 1 -> (1,1): 3 * 1.5 - 3 = 1.5 > 0 -> A wins; normalised by A's weight: 1.5
    out = merge_tensors("ties", [A, B], BASE, [{"weight": 3.0, "density": 0.5}, {"weight": 1.0, "density": 0.5}])
    assert float(out[1, 1]) == pytest.approx(1.5)
    # same elected sign from both: (0,0) with density 1: 1 * 1 + (-2.5) -> negative: B only
    both = merge_tensors("ties", [A, A * 2], BASE, [{"weight": 1.0, "density": 1.0}] * 2)
    torch.testing.assert_close(both, A * 1.5)  # agreeing signs: mean of 1x and 2x
    without = merge_tensors("ties", [A, B], BASE, [{"weight": 1.0, "density": 0.5}] * 2, {"normalize": False})
    assert float(without[0, 0]) == -2.5 and float(without[1, 1]) == -3.0


def test_slerp_of_orthogonal_unit_vectors() -> None:
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    half = merge_tensors("slerp", [e2], e1, options={"t": 0.5})
    torch.testing.assert_close(half, torch.tensor([1.0, 1.0]) / math.sqrt(2))  # unit length, 45 degrees
    third = merge_tensors("slerp", [e2], e1, options={"t": 1 / 3})
    torch.testing.assert_close(third, torch.tensor([math.cos(math.pi / 6), math.sin(math.pi / 6)]))
    torch.testing.assert_close(merge_tensors("slerp", [e2], e1, options={"t": 0.0}), e1)
    torch.testing.assert_close(merge_tensors("slerp", [e2], e1, options={"t": 1.0}), e2)
    # unnormalised ends keep their own lengths in the combination: 2 e1 and 3 e2 at t = 0.5
    torch.testing.assert_close(merge_tensors("slerp", [3 * e2], 2 * e1, options={"t": 0.5}),
                               torch.tensor([2.0, 3.0]) / math.sqrt(2))


def test_slerp_falls_back_to_lerp_for_nearly_parallel_tensors() -> None:
    v0 = torch.tensor([1.0, 0.0, 0.0])
    v1 = torch.tensor([2.0, 1e-3, 0.0])  # cos > 0.9995
    out = merge_tensors("slerp", [v1], v0, options={"t": 0.25})
    torch.testing.assert_close(out, 0.75 * v0 + 0.25 * v1)


def test_dare_with_a_fixed_seed() -> None:
    base = torch.zeros(10, 100)
    delta = torch.ones(10, 100)
    out = merge_tensors("dare_linear", [delta], base, [{"weight": 1.0, "density": 0.3}], seed=7)
    kept = out != 0
    # survivors are rescaled by exactly 1 / density; the rest dropped to the base
    torch.testing.assert_close(out[kept], torch.full((int(kept.sum()),), 1 / 0.3))
    assert int(kept.sum()) == 291  # this seed's draw: 29.1% of 1000 kept (expected 30%)
    # the documented draw: uniform numbers from a generator seeded by crc32("seed:name:chunk")
    u = torch.rand((1, 1, 1000), generator=torch.Generator().manual_seed(zlib.crc32(b"7:tensor:0")))
    assert torch.equal(kept.reshape(-1), (u < 0.3).reshape(-1))
    again = merge_tensors("dare_linear", [delta], base, [{"weight": 1.0, "density": 0.3}], seed=7)
    assert torch.equal(out, again)
    other = merge_tensors("dare_linear", [delta], base, [{"weight": 1.0, "density": 0.3}], seed=8)
    assert not torch.equal(out, other)
    # density 1 keeps everything: DARE is then task arithmetic
    full = merge_tensors("dare_ties", [A, B], BASE, [{"weight": 1.0, "density": 1.0}] * 2, seed=7)
    ties = merge_tensors("ties", [A, B], BASE, [{"weight": 1.0, "density": 1.0}] * 2, {"normalize": False})
    torch.testing.assert_close(full, ties)


def test_linear_task_arithmetic_breadcrumbs_model_stock_passthrough_by_hand() -> None:
    lin = merge_tensors("linear", [A, B], params=[{"weight": 1.0}, {"weight": 3.0}])
    torch.testing.assert_close(lin, (A + 3 * B) / 4)
    raw = merge_tensors("linear", [A, B], params=[{"weight": 1.0}, {"weight": 3.0}], options={"normalize": False})
    torch.testing.assert_close(raw, A + 3 * B)
    base = torch.full((2, 3), 10.0)
    ta = merge_tensors("task_arithmetic", [base + A, base + B], base, [{"weight": 0.5}, {"weight": -1.0}],
                       {"lambda": 2.0})
    torch.testing.assert_close(ta, base + 2.0 * (0.5 * A - B))
    # breadcrumbs, density 0.5 (3 of 6), gamma 0.2 (1 outlier): A drops 3, keeps -2, 1.5, 1;
    # B drops -3, keeps -2.5, 2, 1.25
    bc = merge_tensors("breadcrumbs", [A, B], BASE, [{"weight": 1.0, "density": 0.5, "gamma": 0.2}] * 2)
    torch.testing.assert_close(bc, torch.tensor([[1.0 - 2.5, -2.0 + 1.25, 0.0], [0.0, 1.5, 2.0]]))
    # model stock: offsets at 60 degrees (cos 0.5) -> t = 2 * 0.5 / (1 + 0.5) = 2/3 of the way to their mean
    w1, w2 = torch.tensor([1.0, 0.0]), torch.tensor([0.5, math.sqrt(3) / 2])
    ms = merge_tensors("model_stock", [w1, w2], torch.zeros(2))
    torch.testing.assert_close(ms, (2 / 3) * (w1 + w2) / 2)
    orth = merge_tensors("model_stock", [torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])], torch.zeros(2))
    torch.testing.assert_close(orth, torch.zeros(2))  # orthogonal offsets: stay at the base
    torch.testing.assert_close(merge_tensors("passthrough", [A], params=[{"scale": 2.0}]), 2 * A)


def test_kth_largest_radix_select_equals_kthvalue() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 40, 50, generator=g)
    x[0, :5] = 0.0  # repeated values and zeros
    x[1, 3:9] = 0.125
    base = torch.zeros(40, 50)
    for density in (0.01, 0.3, 0.5, 0.999, 1.0):
        k = torch.full((3,), int(density * 2000))
        whole = MergeTask("t", [TensorSource(t) for t in x], TensorSource(base), chunk_elems=None)
        chunked = MergeTask("t", [TensorSource(t) for t in x], TensorSource(base), chunk_elems=150)
        assert chunked.n_chunks > 10
        f = lambda c: (c.xs - c.base).abs()
        a, b = kth_largest(whole, f, k), kth_largest(chunked, f, k)
        assert torch.equal(a, b)
        expected = torch.sort(x.abs().reshape(3, -1), descending=True).values[:, int(k[0]) - 1]
        if density == 1.0:
            expected = torch.zeros(3)  # k = N: keep everything
        assert torch.equal(a.squeeze(1), expected)


def _inputs(name: str, shape: tuple[int, ...], dtype: torch.dtype) -> tuple[list, torch.Tensor | None, list, dict]:
    g = torch.Generator().manual_seed(1)
    method = REGISTRY[name]
    base = torch.randn(shape, generator=g).to(dtype)
    n = method.max_models or 3
    models = [(base.float() + 0.1 * torch.randn(shape, generator=g)).to(dtype) for _ in range(n)]
    params = [{k: {"weight": 0.7, "density": 0.6, "gamma": 0.05, "scale": 1.1}[k] for k in method.model_params}
              for _ in models]
    options = {"t": 0.3} if "t" in method.global_params else {}
    return models, base if method.needs_base else None, params, options


@pytest.mark.parametrize("name", sorted(REGISTRY))
@pytest.mark.parametrize("shape", [(64, 96), (300,)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_every_method_shapes_dtypes_determinism_and_streaming(name: str, shape: tuple[int, ...],
                                                               dtype: torch.dtype) -> None:
    models, base, params, options = _inputs(name, shape, dtype)
    out = merge_tensors(name, models, base, params, options, seed=3)
    assert out.shape == torch.Size(shape) and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert torch.equal(out, merge_tensors(name, models, base, params, options, seed=3))  # deterministic
    ref = base.float() if base is not None else models[0].float()
    assert 0 < float((out - ref).abs().max()) < 1.0  # it merged something, and stayed near the inputs
    if name.startswith("dare") or len(shape) == 1:
        return  # DARE draws per chunk; vectors are never split into chunks
    streamed = merge_tensors(name, models, base, params, options, seed=3, chunk_elems=96 * 7)
    torch.testing.assert_close(streamed, out, rtol=1e-6, atol=1e-6)


def test_grouped_merges_each_row_independently() -> None:
    g = torch.Generator().manual_seed(2)
    a, b, base = (torch.randn(5, 200, generator=g) for _ in range(3))
    params = [{"weight": 0.5, "density": 0.4}] * 2
    rows = merge_tensors("ties", [a, b], base, params, grouped=True)
    for i in range(5):
        torch.testing.assert_close(rows[i], merge_tensors("ties", [a[i], b[i]], base[i], params))
    slerp = merge_tensors("slerp", [b], a, options={"t": 0.4}, grouped=True)
    torch.testing.assert_close(slerp[2], merge_tensors("slerp", [b[2]], a[2], options={"t": 0.4}))


def test_bad_parameters_are_refused_with_the_key() -> None:
    with pytest.raises(BadInput, match=r"density = 1.5: ties expects \(0, 1\]"):
        merge_tensors("ties", [A, B], BASE, [{"weight": 1.0, "density": 1.5}] * 2)
    with pytest.raises(BadInput, match="weight: required by linear"):
        merge_tensors("linear", [A, B])
    with pytest.raises(BadInput, match="unknown method 'frankenstein'"):
        merge_tensors("frankenstein", [A, B])
    with pytest.raises(BadInput, match="needs a base model"):
        merge_tensors("ties", [A, B], None, [{"weight": 1.0}] * 2)
    with pytest.raises(BadInput, match="at most 1"):
        merge_tensors("slerp", [A, B], BASE, options={"t": 0.5})
