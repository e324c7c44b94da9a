"""Crossover: a dividing agent breeds with a fit partner of its colony using a genome merge method.

With ``reproduction.mode: crossover`` each child's brain is not a copy of its parent's but a
merge of two parents' flat parameter rows, by any method of `genome.recombine.REGISTRY` except
passthrough, for all children of a step at once (one group per child; per-tensor statistics such
as the TIES threshold or the SLERP angle are taken per child). Mutation noise is added afterwards,
as in division.

- Partner: a tournament of `reproduction.tournament` living agents of the parent's colony drawn
  at random (never the parent itself); the fittest of them. A parent alone in its colony has no
  partner, and its child is a plain copy.
- Roles: SLERP interpolates from the parent (t = 0) to the partner (t = 1) at t = partner_weight.
  Methods on task vectors (ties, dare_*, task_arithmetic, breadcrumbs*, model_stock) take the
  colony's mean living brain as the base, so a task vector is what an agent learned beyond its
  colony's average; the parents get weights 1 - partner_weight and partner_weight.
- Every random draw comes from the simulation's generator.
"""

from __future__ import annotations

import torch

from swarm.colony import ColonyState
from swarm.params import SwarmSpec


def choose_partners(states: list[ColonyState], parent_colony: torch.Tensor, parent_slot: torch.Tensor,
                    tournament: int, gen: torch.Generator) -> torch.Tensor:
    """(n,) partner slot (in the parent's colony) of each child, -1 when the parent is alone."""
    partner = torch.full_like(parent_slot, -1)
    for c, st in enumerate(states):  # few colonies: a loop over colonies, never over agents
        mine = (parent_colony == c).nonzero().squeeze(1)
        if len(mine) == 0:
            continue
        cap = len(st.alive)
        ok = st.alive.unsqueeze(0).repeat(len(mine), 1)  # (n_c, S) candidates
        ok[torch.arange(len(mine)), parent_slot[mine]] = False
        key = torch.rand(len(mine), cap, generator=gen).masked_fill(~ok, -1.0)
        drawn = torch.topk(key, min(tournament, cap), dim=1).indices  # (n_c, k) random living agents
        valid = key.gather(1, drawn) >= 0
        fit = st.fitness[drawn].masked_fill(~valid, float("-inf"))
        best = drawn.gather(1, fit.argmax(1, keepdim=True)).squeeze(1)
        partner[mine] = torch.where(valid.any(1), best, torch.full_like(best, -1))
    return partner


def breed(states: list[ColonyState], params: torch.Tensor, parent_colony: torch.Tensor,
          parent_slot: torch.Tensor, spec: SwarmSpec, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Children's brains before mutation, and their second parents.

    Args:
        states: the colonies (parents still in their slots).
        params: (n, P) the parents' flat parameter rows, one per child.
        parent_colony, parent_slot: (n,) where each parent lives.
        spec: `reproduction` gives the method and its parameters.
        gen: the simulation's generator.

    Returns:
        (n, P) merged rows (a parent's own row where it found no partner), and (n,) int64 agent id
        of each child's second parent (-1 where it found no partner).
    """
    from genome.recombine.merge import merge_tensors
    from genome.recombine.registry import REGISTRY

    rp = spec.reproduction
    method = REGISTRY[rp.method]
    partner = choose_partners(states, parent_colony, parent_slot, rp.tournament, gen)
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
    paired = (partner >= 0).nonzero().squeeze(1)
    mate_id = torch.full_like(parent_slot, -1)
    for c, st in enumerate(states):
        mine = (parent_colony == c) & (partner >= 0)
        mate_id[mine] = st.agent_id[partner[mine]]
    if len(paired) == 0:
        return params, mate_id
    mother = params[paired]  # (g, P)
    father = torch.empty_like(mother)
    base = torch.empty_like(mother)
    for c, st in enumerate(states):
        mine = parent_colony[paired] == c
        if bool(mine.any()):
            father[mine] = st.params[partner[paired][mine]]
            living = st.params[st.alive]
            base[mine] = living.mean(0) if len(living) else 0.0
    w = rp.partner_weight
    options = {"t": w} if "t" in method.global_params else {}
    per_model = {"weight": None, "density": rp.density}
    if rp.method == "slerp":
        merged = merge_tensors("slerp", [father], mother, None, options, grouped=True, name="brain")
    else:
        given = [dict(per_model, weight=1.0 - w), dict(per_model, weight=w)]
        model_params = [{k: v for k, v in p.items() if k in method.model_params} for p in given]
        merged = merge_tensors(rp.method, [mother, father], base if method.needs_base else None, model_params,
                               options, grouped=True, seed=seed, name="brain")
    out = params.clone()
    out[paired] = merged
    return out, mate_id
