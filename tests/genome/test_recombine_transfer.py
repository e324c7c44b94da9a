"""Homologous selection (CKA, reading vectors, homology scores, interchange interventions) on small
models with a known task, and asymmetric gene transfer with its preservation bound."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from genome.recombine.homology import (
    activations,
    homology_matrix,
    interchange_intervention_accuracy,
    linear_cka,
    reading_vector,
)
from genome.recombine.transfer import Grafted, transfer


def test_linear_cka_invariances() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 10, generator=g)
    q, _ = torch.linalg.qr(torch.randn(10, 10, generator=g))
    assert linear_cka(x, 3.0 * x @ q + 1.0) == pytest.approx(1.0, abs=1e-9)  # rotation, scale, shift
    assert linear_cka(x, torch.randn(200, 20, generator=g)) < 0.15  # unrelated, another width
    assert linear_cka(x, x[:, :5]) == pytest.approx(0.5 ** 0.5, abs=0.1)  # half the features


def test_reading_vector_from_contrast_pairs() -> None:
    g = torch.Generator().manual_seed(1)
    concept = F.normalize(torch.randn(16, generator=g), dim=0)
    neutral = torch.randn(50, 16, generator=g)
    positive = neutral + 2.0 * concept + 0.1 * torch.randn(50, 16, generator=g)
    for method in ("mean", "pca"):
        v = reading_vector(positive, neutral, method)
        assert float(v.norm()) == pytest.approx(1.0) and float(v @ concept) > 0.98


class Towers(nn.Module):
    """y = (a + b) mod 4 from one-hot a and b; each digit has its own tower (the known circuit)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.tower_a = nn.Sequential(nn.Linear(4, width), nn.Tanh())
        self.tower_b = nn.Sequential(nn.Linear(4, width), nn.Tanh())
        self.head = nn.Sequential(nn.Linear(2 * width, 32), nn.Tanh(), nn.Linear(32, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.tower_a(x[:, :4]), self.tower_b(x[:, 4:])], -1))


def _grid() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    a, b = torch.meshgrid(torch.arange(4), torch.arange(4), indexing="ij")
    a, b = a.reshape(-1), b.reshape(-1)
    return torch.cat([F.one_hot(a, 4), F.one_hot(b, 4)], -1).float(), a, b


def _trained(width: int, seed: int) -> Towers:
    torch.manual_seed(seed)
    model = Towers(width)
    x, a, b = _grid()
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    for _ in range(300):
        opt.zero_grad()
        F.cross_entropy(model(x), (a + b) % 4).backward()
        opt.step()
    assert float((model(x).argmax(-1) == (a + b) % 4).float().mean()) == 1.0
    return model


def test_homology_scores_and_interchange_interventions() -> None:
    from genome.align import fit_projection

    m1, m2 = _trained(8, 0), _trained(12, 1)  # same task, different seeds and widths
    x, a, b = _grid()
    sites = ["tower_a", "tower_b"]
    act1, act2 = activations(m1, sites, x), activations(m2, sites, x)
    # contrast pairs for the concept "a is 0 rather than 1", b held fixed
    pos, neg = x[a == 0], x[a == 1]
    c1 = [(activations(m1, [s], pos)[s], activations(m1, [s], neg)[s]) for s in sites]
    c2 = [(activations(m2, [s], pos)[s], activations(m2, [s], neg)[s]) for s in sites]
    cka = homology_matrix([act1[s] for s in sites], [act2[s] for s in sites])
    assert float(cka[0, 0]) > 0.8 and float(cka[1, 1]) > 0.8  # a-tower with a-tower, b with b
    assert float(cka[0, 1]) < 0.05 and float(cka[1, 0]) < 0.05  # a and b are independent on the grid
    h = homology_matrix([act1[s] for s in sites], [act2[s] for s in sites], c1, c2)
    assert float(h[0, 0]) > 0.9  # same representation and the same direction for the concept "a"
    assert float(h[1, 1]) < float(h[0, 0]) - 0.3  # the b-towers share a representation, not the concept

    # interchange: run on (a, b) with the a-tower taken from (a', b'); the causal model says a' + b
    perm = torch.roll(torch.arange(16), 5)
    source = x[perm]
    expected = (a[perm] + b) % 4
    assert interchange_intervention_accuracy(m1, "tower_a", x, source, expected) == 1.0
    to_a = fit_projection(act2["tower_a"], act1["tower_a"])  # the donor's a-tower in m1's space
    assert interchange_intervention_accuracy(m1, "tower_a", x, source, expected, donor=m2,
                                             projection=to_a) == 1.0
    wrong = fit_projection(act2["tower_b"], act1["tower_a"])  # a non-homologous part, mapped as best it can
    assert interchange_intervention_accuracy(m1, "tower_a", x, source, expected, donor=m2, donor_site="tower_b",
                                             projection=wrong) <= 0.5


class Net(nn.Module):
    """Two heads on one trunk: head_r is the recipient's own skill, head_d the one to acquire."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.trunk, self.head_r, self.head_d = nn.Linear(8, hidden), nn.Linear(hidden, 3), nn.Linear(hidden, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.tanh(self.trunk(x))
        return torch.cat([self.head_r(z), self.head_d(z)], -1)


def _task_data() -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(1)
    w_r, w_d = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    x = torch.randn(800, 8, generator=g)
    return x, (x[:, :4] @ w_r.T).argmax(-1), (x[:, 4:] @ w_d.T).argmax(-1)


def _fit(hidden: int, head: str, x: torch.Tensor, y: torch.Tensor, seed: int) -> Net:
    torch.manual_seed(seed)
    net = Net(hidden)
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    cols = slice(0, 3) if head == "r" else slice(3, 6)
    for _ in range(300):
        opt.zero_grad()
        F.cross_entropy(net(x)[:, cols], y).backward()
        opt.step()
    return net


@pytest.fixture(scope="module")
def nets() -> dict:
    x, y_r, y_d = _task_data()
    return {"x": x, "y_d": y_d, "recipient": _fit(16, "r", x[:400], y_r[:400], 0),
            "donor": _fit(16, "d", x[:400], y_d[:400], 1), "wide_donor": _fit(24, "d", x[:400], y_d[:400], 2)}


def _transfer(nets: dict, donor: str, lam: float) -> object:
    x, y_d = nets["x"], nets["y_d"]
    return transfer(nets["recipient"], nets[donor], {"trunk": "trunk", "head_d": "head_d"}, x[:200], y_d[:200],
                    x[200:400], task_loss=lambda o, y: F.cross_entropy(o[:, 3:], y),
                    metric=lambda o, y: float((o[:, 3:].argmax(-1) == y).float().mean()),
                    behaviour=lambda o: o[:, :3].argmax(-1), eval_x=x[400:], eval_y=y_d[400:],
                    lam=lam, steps=150, bound=0.15)


def test_transfer_improves_the_task_within_the_preservation_bound(nets: dict) -> None:
    before = {k: v.clone() for k, v in nets["recipient"].state_dict().items()}
    free = _transfer(nets, "donor", lam=0.0)
    kept = _transfer(nets, "donor", lam=10.0)
    assert kept.task_after > kept.task_before + 0.2  # the new skill, on held-out inputs
    assert kept.within_bound and kept.disagreement <= 0.15
    assert free.disagreement > kept.disagreement + 0.2  # without EWC the old skill is overwritten
    assert free.task_after >= kept.task_after - 0.05
    assert all(torch.equal(v, nets["recipient"].state_dict()[k]) for k, v in before.items())  # input untouched
    assert kept.summary()["task_gain"] == pytest.approx(kept.task_after - kept.task_before)


def test_transfer_through_learned_projections_when_widths_differ(nets: dict) -> None:
    report = _transfer(nets, "wide_donor", lam=1.0)
    assert report.projected == ["trunk", "head_d"] and isinstance(report.model.trunk, Grafted)
    w, bias = report.model.trunk.effective()
    assert w.shape == (16, 8) and bias.shape == (16,)  # the graft acts as a layer of the recipient's shape
    assert report.task_after > report.task_before + 0.2 and report.within_bound
