from __future__ import annotations

import torch

from experiments.spec import validate
from swarm import brain, evolution
from swarm.colony import ColonyState
from swarm.noise import NoiseTable

SPEC = validate({
    "brain": {"embed_dim": 4, "memory_dim": 4, "hidden": 4},
    "colony": {"count": 2, "capacity": 6, "initial_agents": 1},
    "replication": {"threshold": 5},
    "mutation": {"sigma": 0.1, "sigma_memory": 0.01, "noise_table": 4096},
})


def colony(n_alive: int, first_id: int) -> ColonyState:
    st = ColonyState.empty(6, brain.param_count(SPEC.brain), 4, 4)
    gen = torch.Generator().manual_seed(first_id)
    st.params[:] = brain.init_params(6, SPEC.brain, gen)
    st.memory[:] = torch.randn(6, 4, generator=gen)
    st.alive[:n_alive] = True
    st.agent_id[:n_alive] = torch.arange(first_id, first_id + n_alive)
    st.root_id[:n_alive] = st.agent_id[:n_alive]
    st.fit_weight[:n_alive] = 1.0
    return st


def test_division_copies_with_table_noise_resets_counters_and_records_parent():
    a, b = colony(3, 0), colony(2, 100)
    a.counter[1] = 5  # agent 1 reaches R = 5 (all fitness equal: z = 0)
    a.fit_sum[1] = 0.3
    noise = NoiseTable(4096, torch.Generator().manual_seed(9))
    births, died = evolution.divide([a, b], SPEC, noise, step=7, next_id=500, gen=torch.Generator().manual_seed(3))
    assert births.agent_id.tolist() == [500] and births.parent_id.tolist() == [1] and len(died) == 0
    slot = 3  # first free slot of the parent's own colony
    assert a.alive[slot] and a.agent_id[slot] == 500 and a.parent_id[slot] == 1 and a.root_id[slot] == 1
    n_params = a.params.shape[1]
    expected = a.params[1] + 0.1 * noise.table[int(births.noise_offset[0]) : int(births.noise_offset[0]) + n_params]
    torch.testing.assert_close(a.params[slot], expected)
    assert 0 < (a.memory[slot] - a.memory[1]).abs().max() < 0.1
    assert a.counter[1] == 0 and a.counter[slot] == 0 and a.birth_step[slot] == 7
    assert abs(float(a.fitness[slot]) - 0.3) < 1e-6  # parent's fitness as a prior


def test_full_colony_sends_the_child_to_the_colony_with_most_room():
    a, b = colony(6, 0), colony(2, 100)
    a.counter[0] = 5
    births, died = evolution.divide([a, b], SPEC, NoiseTable(4096, torch.Generator()), 1, 500, torch.Generator())
    assert births.colony.tolist() == [1] and len(died) == 0 and b.alive.sum() == 3


def test_when_everything_is_full_the_weakest_dies_under_selection():
    a, b = colony(6, 0), colony(6, 100)
    a.fit_sum[:6] = torch.tensor([0.5, 0.4, -0.9, 0.3, 0.2, 0.1])
    b.fit_sum[:6] = 0.5
    a.counter[0] = 5
    births, died = evolution.divide([a, b], SPEC, NoiseTable(4096, torch.Generator()), 1, 500, torch.Generator())
    assert died.tolist() == [2] and a.agent_id[2] == 500  # the freed slot is reused


def test_without_selection_victims_are_random():
    spec = SPEC.model_copy(update={"selection": SPEC.selection.model_copy(update={"pressure": 0.0})})
    victims = set()
    for seed in range(40):
        a, b = colony(6, 0), colony(6, 100)
        a.fit_sum[:6] = torch.tensor([0.5, 0.4, -0.9, 0.3, 0.2, 0.1])
        a.counter[0] = 5
        _, died = evolution.divide([a, b], spec, NoiseTable(4096, torch.Generator()), 1, 500,
                                   torch.Generator().manual_seed(seed))
        victims.update(died.tolist())
    assert len(victims) >= 4 and 0 not in victims  # many different victims, never the parent


def test_fitter_agents_reach_division_sooner():
    a, b = colony(4, 0), colony(1, 100)
    a.fit_sum[:4] = torch.tensor([0.9, 0.0, 0.0, 0.0])
    a.counter[:4] = 4  # below R = 5, but R_0 = 5 exp(-0.1 z_0) < 4.5 for the fit one
    spec = SPEC.model_copy(update={"selection": SPEC.selection.model_copy(update={"pressure": 0.2})})
    births, _ = evolution.divide([a, b], spec, NoiseTable(4096, torch.Generator()), 1, 500, torch.Generator())
    assert births.parent_id.tolist() == [0]
