"""Homologous selection: which parts of two models do the same job.

Three measurements on activations recorded from probe inputs:

- `linear_cka`: linear centred kernel alignment of two layers' activations on the same inputs
  (Kornblith et al. 2019). 1 for representations equal up to rotation and scale, near 0 for
  unrelated ones; widths may differ.
- `reading_vector`: a layer's direction for a concept, from contrast pairs (inputs that differ
  only in the concept): the difference of mean activations (or the first principal component of
  the pair differences), unit length.
- `homology_matrix`: a score per layer pair: CKA, averaged with the |cosine| of the two layers'
  reading vectors when contrast pairs are given. Reading vectors of layers of different widths
  are compared through a least-squares map between the layers fitted on the probes
  (`genome.align.fit_projection`).

`interchange_intervention_accuracy` is the causal test (Geiger et al. 2021): run the recipient on
base inputs while its activation at a site is replaced by the donor's activation on source
inputs (mapped across models when they differ), and count how often the recipient then gives
the output that the swapped variable predicts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from genome.align import Projection, fit_projection


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of two activation matrices on the same N inputs.

    Args:
        x: (N, d1) activations of one layer.
        y: (N, d2) activations of another (any width).

    Returns:
        ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F) in [0, 1], Xc, Yc centred per feature.
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA needs the same inputs: {x.shape[0]} vs {y.shape[0]} rows")
    xc = x.double() - x.double().mean(0)
    yc = y.double() - y.double().mean(0)
    cross = (yc.T @ xc).square().sum()
    norm = (xc.T @ xc).square().sum().sqrt() * (yc.T @ yc).square().sum().sqrt()
    return float(cross / norm) if float(norm) > 0 else 0.0


def reading_vector(positive: torch.Tensor, negative: torch.Tensor, method: str = "mean") -> torch.Tensor:
    """A concept's direction in one layer from contrast pairs.

    Args:
        positive: (N, d) activations on inputs with the concept.
        negative: (N, d) activations on the paired inputs without it.
        method: ``mean`` (difference of means) or ``pca`` (first principal component of the
            pair differences, signed to agree with the mean difference).

    Returns:
        (d,) unit vector.
    """
    diff = positive.double() - negative.double()  # (N, d)
    mean = diff.mean(0)
    if method == "mean":
        v = mean
    elif method == "pca":
        _, _, vh = torch.linalg.svd(diff, full_matrices=False)
        v = vh[0] * torch.sign(vh[0] @ mean + 1e-30)
    else:
        raise ValueError(f"reading_vector method must be mean or pca, got {method!r}")
    return (v / v.norm().clamp_min(1e-30)).float()


def homology_matrix(acts_a: Sequence[torch.Tensor], acts_b: Sequence[torch.Tensor],
                    contrast_a: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None,
                    contrast_b: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None) -> torch.Tensor:
    """Homology score of every layer pair (i of model A, j of model B).

    Args:
        acts_a, acts_b: per layer, (N, d) activations of each model on the same N probes.
        contrast_a, contrast_b: per layer, (positive, negative) activations on contrast pairs.

    Returns:
        (La, Lb) scores in [0, 1]: CKA, or the mean of CKA and |cos| of the reading vectors.
    """
    scores = torch.tensor([[linear_cka(a, b) for b in acts_b] for a in acts_a])
    if contrast_a is None or contrast_b is None:
        return scores
    va = [reading_vector(p, n) for p, n in contrast_a]
    vb = [reading_vector(p, n) for p, n in contrast_b]
    cos = torch.zeros_like(scores)
    for i, (a, u) in enumerate(zip(acts_a, va)):
        for j, (b, w) in enumerate(zip(acts_b, vb)):
            if len(u) != len(w):  # carry A's direction into B's space through a fitted linear map
                u_in_b = u @ fit_projection(a, b).weight  # (d_b,)
                cos[i, j] = abs(float(torch.nn.functional.cosine_similarity(u_in_b, w, dim=0)))
            else:
                cos[i, j] = abs(float(u @ w))
    return (scores + cos) / 2


def activations(model: nn.Module, sites: Sequence[str], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Outputs of the named submodules on inputs x: site -> (N, ...) tensor (no gradients)."""
    modules = dict(model.named_modules())
    missing = [s for s in sites if s not in modules]
    if missing:
        raise ValueError(f"no submodule named {missing[0]!r}; choose from {[n for n in modules if n]}")
    out: dict[str, torch.Tensor] = {}
    hooks = [modules[s].register_forward_hook(lambda m, i, o, s=s: out.__setitem__(s, o.detach()))
             for s in sites]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return out


def patched_forward(model: nn.Module, site: str, x: torch.Tensor,
                    replace: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Run `model` on x with the output of submodule `site` replaced by replace(output)."""
    module = dict(model.named_modules())[site]
    hook = module.register_forward_hook(lambda m, i, o: replace(o))
    try:
        with torch.no_grad():
            return model(x)
    finally:
        hook.remove()


def interchange_intervention_accuracy(recipient: nn.Module, site: str, base_x: torch.Tensor,
                                      source_x: torch.Tensor, expected: torch.Tensor,
                                      donor: nn.Module | None = None, donor_site: str | None = None,
                                      units: slice | torch.Tensor | None = None,
                                      projection: Projection | None = None) -> float:
    """Share of interventions after which the recipient gives the counterfactual answer.

    Args:
        recipient: the model run on `base_x`.
        site: recipient submodule whose output is swapped.
        base_x: (N, ...) inputs the recipient runs on.
        source_x: (N, ...) inputs whose activation is patched in.
        expected: (N,) class the causal model predicts after the swap.
        donor: model giving the activation (default: the recipient itself).
        donor_site: donor submodule (default: `site`).
        units: which output units are swapped (default: all).
        projection: maps donor activations (of the swapped units) into the recipient's space.

    Returns:
        Accuracy in [0, 1] of argmax(recipient output) against `expected`.
    """
    donor = donor if donor is not None else recipient
    donor_site = donor_site or site
    patch = activations(donor, [donor_site], source_x)[donor_site]
    if units is not None:
        patch = patch[:, units]
    if projection is not None:
        patch = projection.apply(patch)

    def swap(out: torch.Tensor) -> torch.Tensor:
        out = out.clone()
        if units is None:
            return patch.reshape(out.shape).to(out.dtype)
        out[:, units] = patch.to(out.dtype)
        return out

    logits = patched_forward(recipient, site, base_x, swap)
    return float((logits.argmax(-1) == expected).float().mean())
