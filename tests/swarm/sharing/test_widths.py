from __future__ import annotations

import pytest
import torch
from torch.nn.functional import normalize

from experiments.spec import validate
from genome.errors import BadInput
from swarm.model import SwarmModel
from swarm.sharing import WidthAdapter

BASE = {
    "colony": {"count": 3, "capacity": 64, "initial_agents": 16}, "brain": {"hidden": 16},
    "memory": {"capacity": 2000}, "replication": {"threshold": 10}, "environment": {"batch": 16},
}


@pytest.mark.parametrize("align,widths", [("interpolate", [32, 64, 96]), ("pad", [64, 80, 128]), ("pca", [16, 32, 64])])
def test_colonies_of_different_widths_answer_in_the_canonical_width(align, widths):
    model = SwarmModel(validate({**BASE, "sharing": {"enabled": True, "widths": widths, "align": align}}), seed=0)
    for _ in range(4):
        model.step()
    assert [c.brain_params.embed_dim for c in model.colonies] == widths
    assert model.memory.response.shape[1] == 64 and model.metrics["shared_rejected"] == 0
    assert model.metrics["registry_size"] == 4 * 16
    for c in model.colonies:
        ans = c.answer(c.state.alive.nonzero().squeeze(1)[:5], normalize(torch.randn(5, 64), dim=-1))
        assert ans.shape == (5, 64)
        torch.testing.assert_close(ans.norm(dim=-1), torch.ones(5))


def test_pad_round_trips_exactly_and_pca_keeps_the_sample_subspace():
    x = normalize(torch.randn(300, 64), dim=-1)
    pad = WidthAdapter(64, 96, "pad")
    torch.testing.assert_close(pad.up(pad.down(x)), x)
    low = torch.randn(300, 8) @ torch.randn(8, 64)  # data in an 8-dim subspace
    pca = WidthAdapter(64, 8, "pca", sample=low)
    torch.testing.assert_close(pca.up(pca.down(low)), normalize(low, dim=-1), atol=1e-4, rtol=0)


def test_bad_width_settings_fail_early():
    for sharing in ({"widths": [32, 64]}, {"widths": [16, 64, 64], "align": "pad"}, {"widths": [64, 64, 96], "align": "pca"}):
        with pytest.raises(BadInput, match="sharing"):
            validate({**BASE, "sharing": sharing})
