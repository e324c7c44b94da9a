"""Where a step's heavy work runs: in this process (serial) or in Ray actors (ray). One interface.

`SwarmModel` asks its backend for the shared memory, to answer every colony's (slot, query) pairs,
to apply feedback, to divide and to save or restore colony states; it never knows which backend
runs. `make_backend` picks by the spec's `backend.name` (Ray is imported only for "ray").

Serial: the colonies' tensors live in the model; this is the code path as it always was, and it
stays deterministic. Ray (swarm/ray_backend.py): each colony's brains and memory vectors live in
a colony actor, the shared memory is a `DistributedMemory` over shard actors; the driver keeps
the light per-agent tensors (ids, fitness, counters, alive) and draws every random number.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from swarm import evolution
from swarm.colony import ColonyState
from swarm.memory import SharedMemory
from swarm.params import SwarmSpec

if TYPE_CHECKING:
    from swarm.model import SwarmModel


class SerialBackend:
    """Everything in this process, exactly the loops over colonies the model always ran."""

    name = "serial"

    def __init__(self, spec: SwarmSpec):
        self.spec = spec

    def make_memory(self, dim: int, gen: torch.Generator) -> SharedMemory:
        return SharedMemory(self.spec.memory, dim, gen)

    def start(self, model: SwarmModel) -> None:
        """Called once the model's colonies exist."""

    def answer(self, model: SwarmModel, pair_agent: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """(N,) global slots and their (N, D) queries -> (N, D) unit answers, colony by colony."""
        answers = torch.empty(len(pair_agent), self.spec.brain.embed_dim)
        for colony in model.colonies:
            mine = (pair_agent // model.capacity) == colony.index
            answers[mine] = colony.answer(pair_agent[mine] % model.capacity, queries[mine])
        return answers

    def record(self, model: SwarmModel, pair_agent: torch.Tensor, rewards: torch.Tensor, niches: torch.Tensor,
               queries: torch.Tensor, step: int, decay: float) -> None:
        """Apply (N,) rewards of the pairs to the agents that served (see `Colony.record`)."""
        for colony in model.colonies:
            mine = (pair_agent // model.capacity) == colony.index
            colony.record(pair_agent[mine] % model.capacity, rewards[mine], niches[mine], queries[mine],
                          model.projection, step, decay, self.spec.brain.memory_rate)

    def divide(self, model: SwarmModel, step: int) -> tuple[evolution.Births, torch.Tensor]:
        return evolution.divide(model.states, self.spec, model.noise, step, model.next_id, model.gen)

    def colony_dicts(self, model: SwarmModel) -> list[dict[str, torch.Tensor]]:
        return [st.to_dict() for st in model.states]

    def load_colony_dicts(self, model: SwarmModel, dicts: list[dict[str, torch.Tensor]]) -> None:
        for colony, st in zip(model.colonies, dicts, strict=True):
            colony.state = ColonyState.from_dict(st)

    def drain_faults(self) -> list[dict[str, Any]]:
        """Faults since the last call (none in one process)."""
        return []

    def close(self) -> None:
        """Release workers (nothing to release here)."""


def make_backend(spec: SwarmSpec) -> SerialBackend:
    if spec.backend.name == "ray":
        from swarm.ray_backend import RayBackend  # Ray is imported only when asked for

        return RayBackend(spec)
    return SerialBackend(spec)
