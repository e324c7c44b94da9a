"""Shared fixtures: small specs that run in a second or two."""

from __future__ import annotations

import pytest
import torch

from experiments.spec import validate

torch.set_num_threads(1)  # small tensors: threads only add overhead (and contend under pytest-xdist)

SMALL = {
    "colony": {"count": 2, "capacity": 64, "initial_agents": 32},
    "brain": {"hidden": 32},
    "memory": {"capacity": 4000},
    "replication": {"threshold": 10},
    "environment": {"batch": 32},
}


@pytest.fixture
def small_spec():
    return validate(SMALL)


def states_equal(a, b) -> bool:
    """Nested state dicts equal value for value (NaN equals NaN)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(states_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(states_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and bool(((a == b) | a.isnan() & b.isnan()).all())
    return a == b
