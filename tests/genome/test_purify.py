"""Haar purification: exact transform, strength 0 is identity, noise is reduced, report fields."""

from __future__ import annotations

import math

import pytest
import torch

from genome.errors import BadInput
from genome.purify import haar_forward, haar_inverse, purify_rows, purify_tensor


def test_haar_is_orthonormal_and_invertible() -> None:
    x = torch.randn(3, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    approx, details = haar_forward(x, 6)
    assert approx.shape == (3, 1) and [d.shape[1] for d in details] == [32, 16, 8, 4, 2, 1]
    energy = approx.pow(2).sum() + sum(d.pow(2).sum() for d in details)
    assert energy.item() == pytest.approx(x.pow(2).sum().item())
    assert torch.allclose(haar_inverse(approx, details), x)


def test_strength_zero_is_identity_and_stats_are_kept() -> None:
    w = torch.randn(32, 100, generator=torch.Generator().manual_seed(0))
    assert torch.equal(purify_rows(w, 0.0), w)
    out = purify_rows(w, 0.8)
    assert out.shape == w.shape
    assert out.mean().item() == pytest.approx(w.mean().item(), abs=1e-5)
    assert out.std(unbiased=False).item() == pytest.approx(w.std(unbiased=False).item(), rel=1e-4)
    with pytest.raises(BadInput, match="strength"):
        purify_rows(w, 1.5)


def test_purification_removes_single_scale_noise() -> None:
    t = torch.linspace(0, 1, 1024)
    signal = torch.sin(2 * math.pi * 4 * t).repeat(8, 1)  # (8, 1024): coherent across scales
    noisy = signal + 0.3 * torch.randn(8, 1024, generator=torch.Generator().manual_seed(0))
    before = (noisy - signal).norm() / signal.norm()
    after = (purify_rows(noisy, 1.0) - signal).norm() / signal.norm()
    assert after < 0.92 * before


def test_report_moves_with_strength() -> None:
    w = 0.05 * torch.randn(64, 256, generator=torch.Generator().manual_seed(0))
    shifts = []
    for strength in (0.0, 0.5, 1.0):
        new, rep = purify_tensor(w, strength, n_probes=16)
        assert new.shape == w.shape and rep.before.n_sampled == w.numel()
        shifts.append(rep.output_shift)
        assert rep.output_cosine <= 1.0 + 1e-6
    assert shifts[0] == 0.0 and shifts[0] < shifts[1] < shifts[2]
    _, rep_1d = purify_tensor(torch.ones(64) + 0.01 * torch.randn(64), 0.5)
    assert rep_1d.output_shift >= 0
