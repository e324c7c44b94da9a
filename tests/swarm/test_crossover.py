"""Crossover reproduction: partner choice, merged children (vectorised over the step's children),
mutation on top, determinism, and division left exactly as it was by default."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from experiments.spec import validate
from genome.errors import BadInput
from genome.recombine.merge import merge_tensors
from swarm import brain, evolution
from swarm.colony import ColonyState
from swarm.crossover import breed, choose_partners, parents_rows
from swarm.model import SwarmModel
from swarm.noise import NoiseTable
from tests.conftest import SMALL

BASE = {"brain": {"embed_dim": 4, "memory_dim": 4, "hidden": 4},
        "colony": {"count": 2, "capacity": 6, "initial_agents": 1},
        "replication": {"threshold": 5},
        "mutation": {"sigma": 0.1, "sigma_memory": 0.01, "noise_table": 4096}}


def spec(**reproduction: object) -> object:
    return validate({**BASE, "reproduction": {"mode": "crossover", **reproduction}})


def colony(n_alive: int, first_id: int, fitness: list[float]) -> ColonyState:
    s = spec()
    st = ColonyState.empty(6, brain.param_count(s.brain), 4, 4)
    gen = torch.Generator().manual_seed(first_id)
    st.params[:] = brain.init_params(6, s.brain, gen)
    st.memory[:] = torch.randn(6, 4, generator=gen)
    st.alive[:n_alive] = True
    st.agent_id[:n_alive] = torch.arange(first_id, first_id + n_alive)
    st.root_id[:n_alive] = st.agent_id[:n_alive]
    st.fit_sum[:n_alive] = torch.tensor(fitness, dtype=torch.float64)
    st.fit_weight[:n_alive] = 1.0
    return st


def test_partner_is_the_fittest_of_the_tournament_never_the_parent() -> None:
    a = colony(5, 0, [0.9, 0.1, 0.5, 0.7, 0.2])
    b = colony(1, 100, [0.3])
    gen = torch.Generator().manual_seed(0)
    # tournament as large as the colony: every living mate is drawn, the fittest wins
    partner = choose_partners([a, b], torch.tensor([0, 0, 1]), torch.tensor([0, 2, 0]), 6, gen)
    assert partner.tolist() == [3, 0, -1]  # parent 0 -> slot 3 (0.7); parent 2 -> slot 0 (0.9); b's agent is alone
    for seed in range(20):  # small tournaments: random mates, still never the parent
        p = choose_partners([a, b], torch.tensor([0]), torch.tensor([0]), 2, torch.Generator().manual_seed(seed))
        assert int(p[0]) in (1, 2, 3, 4)


def test_breed_merges_each_child_with_the_registry_method() -> None:
    a = colony(5, 0, [0.9, 0.1, 0.5, 0.7, 0.2])
    b = colony(1, 100, [0.3])
    states = [a, b]
    pc, ps = torch.tensor([0, 0, 1]), torch.tensor([0, 2, 0])
    parents = torch.stack([a.params[0], a.params[2], b.params[0]])
    s = spec(method="ties", tournament=6, density=0.4, partner_weight=0.5)
    out, pairing = breed(states, parents.clone(), pc, ps, s, torch.Generator().manual_seed(0))
    assert pairing.mate_id.tolist() == [3, 0, -1]  # agent ids of the partners (slot 3 holds agent 3); b's agent had none
    mean = a.params[a.alive].mean(0)  # the colony's mean brain is the base of the task vectors
    p = [{"weight": 0.5, "density": 0.4}] * 2
    torch.testing.assert_close(out[0], merge_tensors("ties", [a.params[0], a.params[3]], mean, p))
    torch.testing.assert_close(out[1], merge_tensors("ties", [a.params[2], a.params[0]], mean, p))
    assert torch.equal(out[2], b.params[0])  # no partner: a copy
    assert not torch.equal(out[0], parents[0])
    ends = {w: breed(states, parents.clone(), pc, ps, spec(method="slerp", tournament=6, partner_weight=w),
                     torch.Generator().manual_seed(0))[0] for w in (0.0, 1.0)}
    torch.testing.assert_close(ends[0.0][0], a.params[0])  # t = 0: the parent
    torch.testing.assert_close(ends[1.0][0], a.params[3])  # t = 1: the partner


def test_divide_in_crossover_mode_mutates_the_merged_child() -> None:
    a = colony(5, 0, [0.9, 0.1, 0.5, 0.7, 0.2])
    b = colony(1, 100, [0.3])
    a.counter[1] = 50  # agent 1 divides (the weakest: its threshold is a little above R = 5)
    s = spec(method="linear", tournament=6, partner_weight=0.25)
    noise = NoiseTable(4096, torch.Generator().manual_seed(9))
    parent_row = a.params[1].clone()
    births, _ = evolution.divide([a, b], s, noise, step=3, next_id=500, gen=torch.Generator().manual_seed(1))
    assert births.parent_id.tolist() == [1]
    assert births.mate_id.tolist() == [0]  # the fittest mate, agent 0, is the second parent
    slot = 5  # first free slot of the parent's colony
    merged = 0.75 * parent_row + 0.25 * a.params[0]  # partner: the fittest mate (slot 0)
    off = int(births.noise_offset[0])
    n = a.params.shape[1]
    torch.testing.assert_close(a.params[slot], merged + 0.1 * noise.table[off: off + n])


def test_crossover_runs_are_deterministic_and_division_is_the_default() -> None:
    assert validate(SMALL).reproduction.mode == "division"

    def run(reproduction: dict | None, seed: int = 3) -> list[dict]:
        data = dict(SMALL, reproduction=reproduction) if reproduction else SMALL
        model = SwarmModel(validate(data), seed=seed)
        metrics = []
        for _ in range(15):
            model.step()
            metrics.append({k: v for k, v in model.metrics.items() if k != "seconds"})
        return metrics

    cross = run({"mode": "crossover", "method": "dare_ties"})
    assert cross == run({"mode": "crossover", "method": "dare_ties"})
    assert sum(m["births"] for m in cross) > 0
    assert cross != run(None)  # the children differ, so the run differs


def test_second_parents_reach_the_lineage_checkpoint_and_run_store(tmp_path) -> None:
    from experiments import reader
    from experiments.runner import run_spec

    data = dict(SMALL, reproduction={"mode": "crossover", "method": "linear"})
    model = SwarmModel(validate(data), seed=3)
    for _ in range(15):
        model.step()
    mates = model.lineage.mates
    births = model.lineage.births
    assert len(mates) > 0 and len(mates) <= int((births[:, 1] >= 0).sum())
    born_at = {int(i): int(s) for i, _, _, _, s in births.tolist()}
    parent_of = {int(i): int(p) for i, p, _, _, _ in births.tolist()}
    for child, mate in mates.tolist():
        assert mate != parent_of[child] and born_at[mate] < born_at[child]  # a living, older mate
    copy = SwarmModel(validate(data), seed=3)
    copy.lineage.load_state_dict(model.lineage.state_dict())
    assert torch.equal(copy.lineage.mates, mates)

    run_dir = run_spec(validate({"run": {"steps": 15}, **data}), tmp_path, progress=False)["run_dir"]
    table = reader.lineage(Path(run_dir)).dropna(subset=["mate_id"])
    assert len(table) > 0 and (table["mate_id"] != table["parent_id"]).all()
    assert set(table["mate_id"].astype(int)) <= set(reader.lineage(Path(run_dir))["agent_id"])


def test_unknown_method_names_the_key() -> None:
    with pytest.raises(BadInput, match="reproduction.method='bogus'"):
        validate({"reproduction": {"mode": "crossover", "method": "bogus"}})
    with pytest.raises(BadInput, match="passthrough"):
        validate({"reproduction": {"method": "passthrough"}})


@pytest.mark.parametrize("method", ["ties", "slerp", "dare_linear"])
def test_a_colony_merging_its_own_parents_matches_breed(method) -> None:
    """What a Ray colony actor does (`parents_rows` on its own state, with the driver's pairing)
    gives the rows `breed` gives for the whole population in one process."""
    a = colony(5, 0, [0.9, 0.1, 0.5, 0.7, 0.2])
    b = colony(1, 100, [0.3])
    states = [a, b]
    pc, ps = torch.tensor([0, 0, 1]), torch.tensor([0, 2, 0])
    parents = torch.stack([a.params[0], a.params[2], b.params[0]])
    s = spec(method=method, tournament=6, density=0.5, partner_weight=0.4)
    out, pairing = breed(states, parents.clone(), pc, ps, s, torch.Generator().manual_seed(0))
    in_a = parents_rows(a, ps[:2], pairing.partner[:2], s.reproduction, pairing.seed)
    in_b = parents_rows(b, ps[2:], pairing.partner[2:], s.reproduction, pairing.seed)
    if method == "dare_linear":  # random drop masks: same seed, but drawn per call, so compare shapes of the rule
        assert torch.equal(in_b[0], b.params[0]) and in_a.shape == out[:2].shape
        assert not torch.equal(in_a[0], a.params[0])
    else:
        torch.testing.assert_close(torch.cat([in_a, in_b]), out)
