"""A colony: one shard of the population held as tensors, and the mesa agent that owns it.

Slots are reused: an agent occupies a slot from birth to death; `alive` marks occupied slots.
All per-agent state is a tensor over slots, so every update below is one vectorised operation.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import mesa
import torch

from swarm import brain
from swarm.params import BrainParams


@dataclass
class ColonyState:
    """Per-slot tensors of one colony. S = capacity, P = brain parameters, M = memory, K = niches."""

    params: torch.Tensor  # (S, P) float32 brains
    memory: torch.Tensor  # (S, M) float32 memory vectors
    fit_sum: torch.Tensor  # (S,) float64 decayed sum of rewards
    fit_weight: torch.Tensor  # (S,) float64 decayed count of rewards
    counter: torch.Tensor  # (S,) int64 interactions since the last division
    alive: torch.Tensor  # (S,) bool
    agent_id: torch.Tensor  # (S,) int64, -1 for a free slot
    parent_id: torch.Tensor  # (S,) int64, -1 for founders
    root_id: torch.Tensor  # (S,) int64 founder of the lineage
    birth_step: torch.Tensor  # (S,) int64
    last_served: torch.Tensor  # (S,) int64
    niche_served: torch.Tensor  # (S, K) float32 queries served per niche since birth
    niche_reward: torch.Tensor  # (S, K) float32 summed reward per niche since birth
    malicious: torch.Tensor  # (S,) bool: answers pushed away from the target (inherited)

    @classmethod
    def empty(cls, capacity: int, n_params: int, memory_dim: int, niches: int) -> ColonyState:
        s = capacity
        return cls(
            params=torch.zeros(s, n_params),
            memory=torch.zeros(s, memory_dim),
            fit_sum=torch.zeros(s, dtype=torch.float64),
            fit_weight=torch.zeros(s, dtype=torch.float64),
            counter=torch.zeros(s, dtype=torch.int64),
            alive=torch.zeros(s, dtype=torch.bool),
            agent_id=torch.full((s,), -1, dtype=torch.int64),
            parent_id=torch.full((s,), -1, dtype=torch.int64),
            root_id=torch.full((s,), -1, dtype=torch.int64),
            birth_step=torch.zeros(s, dtype=torch.int64),
            last_served=torch.zeros(s, dtype=torch.int64),
            niche_served=torch.zeros(s, niches),
            niche_reward=torch.zeros(s, niches),
            malicious=torch.zeros(s, dtype=torch.bool),
        )

    def to_dict(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, torch.Tensor]) -> ColonyState:
        return cls(**{f.name: d[f.name] for f in fields(cls)})

    @property
    def fitness(self) -> torch.Tensor:
        """(S,) float32 exponentially weighted mean reward; 0 before the first interaction."""
        return (self.fit_sum / self.fit_weight.clamp_min(1e-9)).float() * (self.fit_weight > 0)

    @property
    def high_water(self) -> int:
        """One past the last occupied slot: forward passes run over slots [0, high_water)."""
        occupied = self.alive.nonzero()
        return int(occupied[-1]) + 1 if len(occupied) else 0

    def free_slots(self) -> torch.Tensor:
        """(F,) free slot indices, lowest first, so populations stay packed at the front."""
        return (~self.alive).nonzero().squeeze(1)


class Colony(mesa.Agent):
    """A mesa agent that hosts one shard of the swarm as a `ColonyState`."""

    def __init__(self, model: mesa.Model, index: int, state: ColonyState, brain_params: BrainParams):
        super().__init__(model)
        self.index = index
        self.state = state
        self.brain_params = brain_params
        self.genes = None  # swarm.genes.GeneBrains when brains are gene references (genes.enabled)
        self.adapter = None  # swarm.sharing.WidthAdapter when this colony's width is not the canonical one

    @property
    def population(self) -> int:
        return int(self.state.alive.sum())

    def answer(self, slots: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """Every (slot, query) pair answered by that slot's brain, in one batched pass.

        Args:
            slots: (N,) int64 slot of each pair.
            queries: (N, D) query of each pair.

        Returns:
            (N, D) unit responses, in the order of the pairs.
        """
        st = self.state
        if self.adapter is not None:  # canonical queries -> this colony's width (answers map back below)
            queries = self.adapter.down(queries)
        n_slots = st.high_water
        counts = torch.bincount(slots, minlength=n_slots)  # (S',)
        order = torch.argsort(slots, stable=True)  # pairs grouped by slot
        starts = torch.cumsum(counts, 0) - counts  # (S',) first pair of each slot
        sorted_slots = slots[order]
        position = torch.arange(len(slots)) - starts[sorted_slots]  # rank inside its slot
        padded = queries.new_zeros(n_slots, int(counts.max()), queries.shape[1])  # (S', Q, D)
        padded[sorted_slots, position] = queries[order]
        if self.genes is not None:  # brains as shared genes: materialised chunk by chunk, batched
            out = self.genes.forward(self.index, padded, st.memory[:n_slots], counts)
        else:
            flat = st.params[:n_slots] if self.adapter is None else st.params[:n_slots, : brain.param_count(self.brain_params)]
            out = brain.forward(flat, self.brain_params, padded, st.memory[:n_slots])
        answers = torch.empty_like(queries)
        answers[order] = out[sorted_slots, position]
        return answers if self.adapter is None else self.adapter.up(answers)

    def record(
        self,
        slots: torch.Tensor,
        rewards: torch.Tensor,
        niches: torch.Tensor,
        queries: torch.Tensor,
        projection: torch.Tensor,
        step: int,
        decay: float,
        memory_rate: float,
    ) -> None:
        """Apply one step's feedback to the agents that served.

        Fitness is the exponentially weighted mean reward: with d = exp(-1/tau_f) per interaction,
        an agent that served n queries this step gets sum <- d^n sum + sum(r), weight <- d^n weight + n.
        The memory vector follows the queries served, weighted by reward:
        m <- (1 - rate)^n m + rate * (sum_j r_j q_j) @ projection.

        Args:
            slots: (N,) slot of each served pair.
            rewards: (N,) float reward of each pair (cosine to the target).
            niches: (N,) niche of each pair's query.
            queries: (N, D) query of each pair.
            projection: (D, M) fixed map from query space to memory space.
        """
        st = self.state
        cap = len(st.alive)
        n = torch.bincount(slots, minlength=cap)  # (S,)
        served = n > 0
        keep = torch.pow(torch.tensor(decay, dtype=torch.float64), n.double())  # (S,)
        st.fit_sum.mul_(keep).index_add_(0, slots, rewards.double())
        st.fit_weight.mul_(keep).add_(n.double())
        st.counter.add_(n)
        st.last_served[served] = step
        st.niche_served.index_put_((slots, niches), torch.ones_like(rewards), accumulate=True)
        st.niche_reward.index_put_((slots, niches), rewards.float(), accumulate=True)
        rows = served.nonzero().squeeze(1)  # only agents that served change their memory
        pulled = torch.zeros(cap, queries.shape[1]).index_add_(0, slots, queries * rewards.unsqueeze(1))
        forget = torch.pow(torch.tensor(1.0 - memory_rate), n[rows].float()).unsqueeze(1)  # (R, 1)
        st.memory[rows] = st.memory[rows] * forget + memory_rate * (pulled[rows] @ projection)
