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
