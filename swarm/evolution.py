"""Division, mutation, placement and death: one vectorised pass per step over all colonies.

Selection rule (pressure s, documented in the README):
- z_i is agent i's fitness z-score among the living (clipped to [-3, 3]).
- Division: agent i divides when its interaction counter reaches R_i = R exp(-s z_i); at s = 0.1
  an agent two standard deviations above the mean divides after 0.82 R interactions.
- Death: a colony that must make room removes agents idle for more than `idle_limit` steps first,
  then draws victims without replacement with probability proportional to exp(-s z_i / T)
  (Gumbel top-m; T = selection.temperature). At s = 0.1, T = 0.01 the weakest agents almost
  always go; at s = 0 the victim is uniformly random: selection is off.
- Placement (the resource broker): a child stays in its parent's colony if that has a free slot,
  else goes to the colony with most free room, else replaces a victim in its parent's colony.
- Inheritance: child weights = parent + N(0, sigma^2), memory = parent + N(0, sigma_m^2), both
  read from the shared noise table; both counters restart; the child starts with its parent's
  fitness as a prior of weight one interaction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from swarm.colony import ColonyState
from swarm.noise import NoiseTable
from swarm.params import SwarmSpec


@dataclass
class Births:
    agent_id: torch.Tensor  # (n,) int64
    parent_id: torch.Tensor  # (n,)
    root_id: torch.Tensor  # (n,)
    colony: torch.Tensor  # (n,)
    noise_offset: torch.Tensor  # (n,) where the child's weight noise starts in the table
    memory_offset: torch.Tensor | None = None  # (n,) where the child's memory noise starts
    mate_id: torch.Tensor | None = None  # (n,) second parent under crossover, -1 for none; None: division
    mate_slot: torch.Tensor | None = None  # (n,) that partner's slot in the parent's colony (crossover)
    merge_seed: int = 0  # the crossover merge's seed (the Ray backend merges in the colony actors)


def fitness_z(states: list[ColonyState]) -> torch.Tensor:
    """(C, S) fitness z-scores among the living, clipped to [-3, 3]; 0 for free slots."""
    fit = torch.stack([st.fitness for st in states])  # (C, S)
    alive = torch.stack([st.alive for st in states])
    live = fit[alive]
    if len(live) < 2:
        return torch.zeros_like(fit)
    z = ((fit - live.mean()) / (live.std() + 1e-6)).clamp(-3.0, 3.0)
    return z * alive


def choose_victims(
    st: ColonyState, m: int, z: torch.Tensor, spec: SwarmSpec, step: int,
    protect: torch.Tensor, gen: torch.Generator,
) -> torch.Tensor:
    """(m' <= m,) slots to free in one colony: idle agents first, then softmax(-s z / T) draws."""
    sel = spec.selection
    candidate = st.alive & ~protect
    logits = -sel.pressure * z / sel.temperature  # (S,)
    logits = torch.where((step - st.last_served) > sel.idle_limit, torch.tensor(1e9), logits)
    gumbel = -torch.log(-torch.log(torch.rand(len(z), generator=gen).clamp(1e-12, 1 - 1e-7)))
    key = (logits + gumbel).masked_fill(~candidate, float("-inf"))
    return torch.topk(key, min(m, int(candidate.sum()))).indices


def _plan_targets(parent_colony: torch.Tensor, free: list[int]) -> torch.Tensor:
    """(n,) colony for each child: own colony if room, else most free room, else own (evict)."""
    n_col = len(free)
    room = torch.tensor(free)
    target = torch.full_like(parent_colony, -1)
    for c in range(n_col):  # few colonies: a loop over colonies, never over agents
        mine = (parent_colony == c).nonzero().squeeze(1)
        take = mine[: int(room[c])]
        target[take] = c
        room[c] -= len(take)
    for idx in (target < 0).nonzero().squeeze(1):
        if int(room.max()) <= 0:
            break
        c = int(room.argmax())
        target[idx] = c
        room[c] -= 1
    left = target < 0
    target[left] = parent_colony[left]
    return target


def divide(
    states: list[ColonyState], spec: SwarmSpec, noise: NoiseTable, step: int,
    next_id: int, gen: torch.Generator, widths: tuple[int, int] | None = None,
) -> tuple[Births, torch.Tensor]:
    """Let every agent that reached its threshold divide.

    Args:
        widths: (weights, memory) widths the noise offsets are drawn for, when the states hold
            no weights here (the Ray backend: brains live in the colony actors, which add the noise).

    Returns:
        The births, and the (m,) ids of agents removed to make room.
    """
    cap = len(states[0].alive)
    z = fitness_z(states)  # (C, S)
    counter = torch.stack([st.counter for st in states]).double()  # (C, S)
    alive = torch.stack([st.alive for st in states])
    threshold = spec.replication.threshold * torch.exp(-spec.selection.pressure * z.double())
    dividing = alive & (counter >= threshold)  # (C, S)
    parents = dividing.flatten().nonzero().squeeze(1)  # (n,) global index c * S + slot
    empty = torch.zeros(0, dtype=torch.int64)
    if len(parents) == 0:
        return Births(empty, empty, empty, empty, empty), empty

    parent_colony, parent_slot = parents // cap, parents % cap
    target = _plan_targets(parent_colony, [int((~st.alive).sum()) for st in states])
    died = []
    for c, st in enumerate(states):
        need = int((target == c).sum()) - int((~st.alive).sum())
        if need > 0:
            victims = choose_victims(st, need, z[c], spec, step, dividing[c], gen)
            died.append(st.agent_id[victims].clone())
            st.alive[victims] = False
            st.agent_id[victims] = -1
            if len(victims) < need:  # not enough non-dividing agents: drop the surplus children
                surplus = (target == c).nonzero().squeeze(1)[len(victims) - need :]
                target[surplus] = -1
    placed = target >= 0
    parents, parent_colony, parent_slot, target = (
        parents[placed], parent_colony[placed], parent_slot[placed], target[placed]
    )

    n = len(parents)
    n_params = states[0].params.shape[1]
    mem_dim = states[0].memory.shape[1]
    w_width, m_width = widths if widths is not None else (n_params, mem_dim)
    w_off = noise.offsets(n, w_width, gen)
    m_off = noise.offsets(n, m_width, gen)
    child_id = torch.arange(next_id, next_id + n, dtype=torch.int64)
    parent_id = torch.empty(n, dtype=torch.int64)
    root_id = torch.empty(n, dtype=torch.int64)
    params = torch.empty(n, n_params)
    memory = torch.empty(n, mem_dim)
    prior = torch.empty(n, dtype=torch.float64)
    malicious = torch.empty(n, dtype=torch.bool)
    for c, st in enumerate(states):  # gather parents colony by colony
        mine = parent_colony == c
        slots = parent_slot[mine]
        parent_id[mine] = st.agent_id[slots]
        root_id[mine] = st.root_id[slots]
        params[mine] = st.params[slots]
        memory[mine] = st.memory[slots]
        prior[mine] = st.fitness[slots].double()
        malicious[mine] = st.malicious[slots]
        st.counter[slots] = 0
    pairing = None
    if spec.reproduction.mode == "crossover":  # merge with a fit colony mate first (swarm/crossover.py)
        from swarm.crossover import breed

        params, pairing = breed(states, params, parent_colony, parent_slot, spec, gen)
    params.add_(noise.slices(w_off, n_params), alpha=spec.mutation.sigma)
    memory.add_(noise.slices(m_off, mem_dim), alpha=spec.mutation.sigma_memory)

    for c, st in enumerate(states):
        mine = (target == c).nonzero().squeeze(1)
        slots = st.free_slots()[: len(mine)]
        st.params[slots] = params[mine]
        st.memory[slots] = memory[mine]
        st.fit_sum[slots] = prior[mine]
        st.fit_weight[slots] = 1.0
        st.counter[slots] = 0
        st.alive[slots] = True
        st.agent_id[slots] = child_id[mine]
        st.parent_id[slots] = parent_id[mine]
        st.root_id[slots] = root_id[mine]
        st.birth_step[slots] = step
        st.last_served[slots] = step
        st.niche_served[slots] = 0.0
        st.niche_reward[slots] = 0.0
        st.malicious[slots] = malicious[mine]
    births = Births(child_id, parent_id, root_id, target, w_off, m_off)
    if pairing is not None:
        births.mate_id, births.mate_slot, births.merge_seed = pairing.mate_id, pairing.partner, pairing.seed
    return births, torch.cat(died) if died else empty
