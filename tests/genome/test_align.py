"""Alignment to a canonical width: pad, interpolate, PCA, learned least squares."""

from __future__ import annotations

import pytest
import torch

from genome.align import REGISTRY, align, fit_pca, fit_projection, interpolate, pad


def test_pad_and_interpolate_shapes_and_values() -> None:
    x = torch.arange(12.0).reshape(3, 4)
    p = pad(x, 6)
    assert p.shape == (3, 6) and torch.equal(p[:, :4], x) and torch.all(p[:, 4:] == 0)
    up = interpolate(x, 7)
    assert up.shape == (3, 7) and torch.allclose(up[:, 0], x[:, 0]) and torch.allclose(up[:, -1], x[:, -1])
    assert torch.allclose(up[0], torch.linspace(0, 3, 7))  # a ramp stays a ramp
    with pytest.raises(ValueError, match="widens only"):
        pad(x, 2)


def test_pca_keeps_the_main_directions() -> None:
    gen = torch.Generator().manual_seed(0)
    latent = torch.randn(500, 3, generator=gen)  # data lives in a 3-d subspace of R^16
    mix = torch.randn(3, 16, generator=gen)
    x = latent @ mix + 5.0
    proj = fit_pca(x, 3)
    z = proj.apply(x)
    assert z.shape == (500, 3) and torch.allclose(z.mean(0), torch.zeros(3), atol=1e-3)
    back = z @ proj.weight.T + x.mean(0)  # orthonormal components: reconstruct exactly
    assert torch.allclose(back, x, atol=1e-3)
    with pytest.raises(ValueError, match="d_out"):
        fit_pca(x[:2], 3)


def test_learned_projection_recovers_a_linear_map() -> None:
    gen = torch.Generator().manual_seed(0)
    src = torch.randn(400, 24, generator=gen)
    true_w, true_b = torch.randn(24, 10, generator=gen), torch.randn(10, generator=gen)
    dst = src @ true_w + true_b
    proj = fit_projection(src, dst, ridge=1e-8)
    assert torch.allclose(proj.weight, true_w, atol=1e-3) and torch.allclose(proj.bias, true_b, atol=1e-3)
    new = torch.randn(5, 24, generator=gen)
    assert torch.allclose(align(new, 10, "learned", fit=proj), new @ true_w + true_b, atol=1e-3)


@pytest.mark.parametrize("method", sorted(REGISTRY))
def test_every_method_reaches_the_canonical_width(method: str) -> None:
    x = torch.randn(40, 20, generator=torch.Generator().manual_seed(1))
    target = 32 if method in ("pad", "interpolate") else 8
    if method == "learned":
        fit = fit_projection(x, torch.randn(40, target, generator=torch.Generator().manual_seed(2)))
        assert align(x, target, method, fit=fit).shape == (40, target)
    else:
        assert align(x, target, method).shape == (40, target)
    assert torch.equal(align(x, 20, method), x)  # matching width passes through
