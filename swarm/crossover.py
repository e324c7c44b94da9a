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

from dataclasses import dataclass

import torch

from swarm.colony import ColonyState
from swarm.params import ReproductionParams, SwarmSpec


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


@dataclass
class Pairing:
    """Who breeds with whom in one step's crossover."""

    partner: torch.Tensor  # (n,) int64 partner slot in the parent's colony, -1 when the parent is alone
    mate_id: torch.Tensor  # (n,) int64 agent id of the partner, -1 when none
    seed: int  # the merge's random seed (DARE and breadcrumbs masks)


def pair(states: list[ColonyState], parent_colony: torch.Tensor, parent_slot: torch.Tensor, spec: SwarmSpec,
         gen: torch.Generator) -> Pairing:
    """Choose every child's partner (a tournament in its parent's colony) and the merge seed."""
    partner = choose_partners(states, parent_colony, parent_slot, spec.reproduction.tournament, gen)
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
    mate_id = torch.full_like(parent_slot, -1)
    for c, st in enumerate(states):
        mine = (parent_colony == c) & (partner >= 0)
        mate_id[mine] = st.agent_id[partner[mine]]
    return Pairing(partner, mate_id, seed)


def merge_rows(mother: torch.Tensor, father: torch.Tensor, base: torch.Tensor, rp: ReproductionParams,
               seed: int) -> torch.Tensor:
    """(g, P) parents' rows, partners' rows and their colonies' mean living rows -> (g, P) merged
    rows by `reproduction.method` (per-row statistics: one group per child)."""
    from genome.recombine.merge import merge_tensors
    from genome.recombine.registry import REGISTRY

    method = REGISTRY[rp.method]
    w = rp.partner_weight
    options = {"t": w} if "t" in method.global_params else {}
    if rp.method == "slerp":
        return merge_tensors("slerp", [father], mother, None, options, grouped=True, name="brain")
    per_model = {"weight": None, "density": rp.density}
    given = [dict(per_model, weight=1.0 - w), dict(per_model, weight=w)]
    model_params = [{k: v for k, v in p.items() if k in method.model_params} for p in given]
    return merge_tensors(rp.method, [mother, father], base if method.needs_base else None, model_params,
                         options, grouped=True, seed=seed, name="brain")


def parents_rows(st: ColonyState, slots: torch.Tensor, partners: torch.Tensor, rp: ReproductionParams,
                 seed: int) -> torch.Tensor:
    """(n,) parent slots and partner slots (-1: none) in one colony -> (n, P) children's rows
    before mutation: merged where a partner exists, the parent's own row otherwise."""
    out = st.params[slots].clone()
    paired = (partners >= 0).nonzero().squeeze(1)
    if len(paired):
        living = st.params[st.alive]
        base = (living.mean(0) if len(living) else torch.zeros(st.params.shape[1])).expand(len(paired), -1)
        out[paired] = merge_rows(out[paired], st.params[partners[paired]], base.contiguous(), rp, seed)
    return out


def breed(states: list[ColonyState], params: torch.Tensor, parent_colony: torch.Tensor,
          parent_slot: torch.Tensor, spec: SwarmSpec, gen: torch.Generator) -> tuple[torch.Tensor, Pairing]:
    """Children's brains before mutation, and the pairing.

    Args:
        states: the colonies (parents still in their slots).
        params: (n, P) the parents' flat parameter rows, one per child.
        parent_colony, parent_slot: (n,) where each parent lives.
        spec: `reproduction` gives the method and its parameters.
        gen: the simulation's generator.

    Returns:
        (n, P) merged rows (a parent's own row where it found no partner), and the `Pairing`
        (its `mate_id` is each child's second parent, -1 where it found no partner).
    """
    pairing = pair(states, parent_colony, parent_slot, spec, gen)
    paired = (pairing.partner >= 0).nonzero().squeeze(1)
    if len(paired) == 0 or params.shape[1] == 0:  # no pair, or brains live elsewhere (Ray colony actors)
        return params, pairing
    mother = params[paired]  # (g, P)
    father = torch.empty_like(mother)
    base = torch.empty_like(mother)
    for c, st in enumerate(states):
        mine = parent_colony[paired] == c
        if bool(mine.any()):
            father[mine] = st.params[pairing.partner[paired][mine]]
            living = st.params[st.alive]
            base[mine] = living.mean(0) if len(living) else 0.0
    out = params.clone()
    out[paired] = merge_rows(mother, father, base, spec.reproduction, pairing.seed)
    return out, pairing
