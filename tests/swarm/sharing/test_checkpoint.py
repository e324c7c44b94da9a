"""The sharing state in checkpoints: a model restored mid-run continues exactly as the original."""

from __future__ import annotations

import pytest
import torch

from experiments.spec import validate
from swarm.model import SwarmModel
from swarm.sharing import ExperienceRegistry
from tests.conftest import states_equal

SPEC = {
    "colony": {"count": 3, "capacity": 48, "initial_agents": 16},
    "brain": {"hidden": 32},
    "memory": {"capacity": 2000},
    "replication": {"threshold": 10},
    "environment": {"batch": 32},
}
SHARING = {"enabled": True, "malicious_colonies": 1, "flood": 4, "min_served": 20}


def _spec(sharing: dict | None = SHARING):
    return validate({**SPEC, **({"sharing": sharing} if sharing else {})})


def _metrics(model: SwarmModel) -> dict[str, float]:
    return {k: v for k, v in model.metrics.items() if k != "seconds"}


def test_restored_model_continues_exactly_with_registry_votes_and_removals(tmp_path):
    spec = _spec()
    a = SwarmModel(spec, seed=2)
    for _ in range(12):
        a.step()
    assert a.metrics["entries_voted_out"] > 0 and a.metrics["entries_unvetted_out"] > 0  # votes have acted
    torch.save(a.state_dict(), tmp_path / "ckpt.pt")
    b = SwarmModel(spec, seed=2)
    b.load_state_dict(torch.load(tmp_path / "ckpt.pt", weights_only=True))  # as runner.load_checkpoint does
    assert b.sharing.registry.root() == a.sharing.registry.root()
    assert b.sharing.registry.audit() == []
    for _ in range(12):
        a.step()
        b.step()
        assert _metrics(a) == _metrics(b)
    assert a.metrics["registry_size"] > 12 * 32  # honest entries and the flooder's junk kept arriving
    assert b.sharing.registry.root() == a.sharing.registry.root()
    assert states_equal(a.state_dict(), b.state_dict())  # votes, reports, cache, memory, rngs


def test_registry_round_trip_keeps_root_and_a_tampered_record_stays_detectable():
    reg = ExperienceRegistry()
    reg.append([b"alpha", b"", b"gamma" * 40])
    reg._records[2] = b"tampered"  # a record changed in memory before the checkpoint
    back = ExperienceRegistry()
    back.load_state_dict(reg.state_dict())
    assert back.root() == reg.root() and back.audit() == [2] and len(back) == 3
    empty = ExperienceRegistry()
    empty.load_state_dict(ExperienceRegistry().state_dict())
    assert len(empty) == 0 and empty.root() == ExperienceRegistry().root()


@pytest.mark.parametrize("saved, loaded, message", [
    (None, SHARING, "without sharing state"),
    (SHARING, None, "with sharing state"),
])
def test_checkpoint_whose_sharing_does_not_match_the_spec_is_refused(saved, loaded, message):
    a = SwarmModel(_spec(saved), seed=0)
    a.step()
    b = SwarmModel(_spec(loaded), seed=0)
    before = b.state_dict()
    with pytest.raises(ValueError, match=message):
        b.load_state_dict(a.state_dict())
    assert states_equal(b.state_dict(), before)  # refused before anything changed


def test_checkpoint_of_another_seed_or_colony_count_has_other_identities():
    a = SwarmModel(_spec(), seed=0)
    for other in (SwarmModel(_spec(), seed=1),
                  SwarmModel(validate({**SPEC, "colony": {**SPEC["colony"], "count": 2}, "sharing": SHARING}))):
        with pytest.raises(ValueError, match="identities"):
            other.load_state_dict(a.state_dict())
