"""What runs inside Ray actors: a colony's heavy state (`ColonyWorker`), a memory shard that
knows its node (`ShardActor`), and the transport `DistributedMemory` uses to call shards.

These are plain classes; `swarm.ray_backend.RayBackend` wraps them with ``ray.remote``. A
`ColonyWorker` holds one colony's brains (S, P), or with genes.enabled its colony's gene pool
(`swarm.genes.GeneBrains`), and its memory vectors (S, M); the driver sends it every (slot, query)
pair of a step at once, its feedback, and the births the broker decided.
"""

from __future__ import annotations

from typing import Any

import torch

from swarm.colony import Colony, ColonyState
from swarm.crossover import parents_rows
from swarm.noise import NoiseTable
from swarm.params import BrainParams, ReproductionParams, SwarmSpec
from swarm.shard import MemoryShard


class ShardActor(MemoryShard):
    """A memory shard as a Ray actor, able to say which node it runs on (for zone-aware placement)."""

    def node(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()


class ColonyWorker:
    """One colony's full `ColonyState`, brains and memory vectors included, in its own process."""

    def __init__(self, index: int, state: dict[str, Any], brain_params: BrainParams,
                 noise: NoiseTable, projection: torch.Tensor,
                 reproduction: ReproductionParams | None = None, genes: SwarmSpec | None = None,
                 adapter: Any = None):
        """`genes`: the spec, when brains are gene references (genes.enabled): this actor then
        holds its colony's genes in a `GeneBrains` of its own, built from the dense (S, P) brains
        in `state`, or restored from ``state["genes"]`` (a checkpoint's `heavy()`). `adapter`: the
        colony's `swarm.sharing.WidthAdapter` when its width is not the canonical one."""
        torch.set_num_threads(1)  # one core per actor; parallelism comes from the actors
        self.index, self.brain_params, self.genes, self.adapter = index, brain_params, None, adapter
        self.reproduction = reproduction
        self.state = ColonyState.from_dict(state)
        self.noise, self.projection = noise, projection
        if genes is not None:
            from swarm.genes import GeneBrains

            self.genes = GeneBrains(genes, noise, torch.Generator())
            if "genes" in state:
                self.genes.load_state_dict(state["genes"])
                self.state.params = self.state.params[:, :0]
            else:
                self.genes.adopt([self])

    def node(self) -> str:
        """The Ray node this colony runs on."""
        import ray

        return ray.get_runtime_context().get_node_id()

    def answer(self, slots: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """(N,) slots, (N, D) queries -> (N, D) answers: `Colony.answer` on this worker's state."""
        return Colony.answer(self, slots, queries)  # Colony.answer reads state, genes, brain_params only

    def record(self, slots: torch.Tensor, rewards: torch.Tensor, niches: torch.Tensor, queries: torch.Tensor,
               step: int, decay: float) -> None:
        Colony.record(self, slots, rewards, niches, queries, self.projection, step, decay,
                      self.brain_params.memory_rate)

    def export(self, slots: torch.Tensor, partners: torch.Tensor | None = None,
               seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """(n,) parent slots -> the children's (n, P) brains before mutation and (n, M) memory
        vectors: the parents' rows, or under crossover their merges with `partners` (slots here,
        -1 for none; swarm/crossover.py) with the driver's merge `seed`."""
        if self.genes is not None:  # materialised; the receiving colony cuts them into genes of its own
            return self.genes.params(self.index, slots), self.state.memory[slots].clone()
        if partners is None:
            return self.state.params[slots].clone(), self.state.memory[slots].clone()
        return parents_rows(self.state, slots, partners, self.reproduction, seed), self.state.memory[slots].clone()

    def births(self, alive: torch.Tensor, child_slots: torch.Tensor, local_parents: torch.Tensor,
               remote: list, w_off: torch.Tensor, m_off: torch.Tensor, sigma: float, sigma_m: float,
               local_partners: torch.Tensor | None = None, seed: int = 0) -> int:
        """Write children: rows of local parents first, then those exported by other colonies (refs).

        Args:
            alive: (S,) the colony's alive mask after division (the driver decides it).
            child_slots: (n,) slots of the children, local-parent children first.
            local_parents: (n_local,) slots of the local parents.
            remote: ObjectRefs of `export` results from other colonies, in the children's order.
            w_off, m_off: (n,) noise offsets of the children's weights and memory.
            local_partners, seed: crossover partners of the local parents (slots, -1 for none) and
                the merge seed; None under division.
        """
        import ray

        st = self.state
        remote_parts = [ray.get(r) for r in remote]
        if self.genes is not None:
            self._gene_births(alive, child_slots, local_parents, [p for p, _ in remote_parts], seed)
            memory = torch.cat([st.memory[local_parents]] + [m for _, m in remote_parts])
        else:
            parts = [self.export(local_parents, local_partners, seed)] + remote_parts
            params = torch.cat([p for p, _ in parts])
            memory = torch.cat([m for _, m in parts])
            params.add_(self.noise.slices(w_off, params.shape[1]), alpha=sigma)
            st.params[child_slots] = params
        memory.add_(self.noise.slices(m_off, memory.shape[1]), alpha=sigma_m)
        st.memory[child_slots] = memory
        st.alive = alive
        return len(child_slots)

    def _gene_births(self, alive: torch.Tensor, child_slots: torch.Tensor, local_parents: torch.Tensor,
                     remote: list[torch.Tensor], seed: int) -> None:
        """Children as gene references: a local parent's genes are shared, mutated by the spec's
        mode; a parent in another colony arrives as (n, P) weights and is cut into genes here
        first. The mutation draws from `seed` (the driver's, so a run is reproducible)."""
        g = self.genes
        parents = g.slots[self.index][local_parents].clone()  # (n_local, nb), read before any release
        arrived = g.found(torch.cat(remote), rounded=True) if remote else parents[:0]
        g.gen.manual_seed(seed)
        children = g.mutate(torch.cat([parents, arrived]))
        g.release(arrived)  # the arrivals' own references: what children share stays
        replaced = torch.zeros_like(alive)
        replaced[child_slots] = True
        g.vacate(self.index, ~alive | replaced)
        g.slots[self.index][child_slots] = children

    def set_alive(self, alive: torch.Tensor) -> None:
        if self.genes is not None:
            self.genes.vacate(self.index, ~alive)
        self.state.alive = alive

    def heavy(self) -> dict[str, Any]:
        """{"params": (S, P) brains, "memory": (S, M) memory vectors, and with genes "genes": the
        pool's state}; gene brains are materialised for living agents (zeros elsewhere)."""
        st = self.state
        if self.genes is None:
            return {"params": st.params, "memory": st.memory}
        params = torch.zeros(len(st.alive), self.genes.P)
        live = st.alive.nonzero().squeeze(1)
        if len(live):
            params[live] = self.genes.params(self.index, live)
        return {"params": params, "memory": st.memory, "genes": self.genes.state_dict()}

    def gene_metrics(self) -> dict[str, float]:
        """This colony's pool_* metrics (see `swarm.gene_stats`)."""
        return self.genes.metrics(int(self.state.alive.sum()))


class RayTransport:
    """`DistributedMemory` calls as actor method calls; a call that fails marks its shard lost."""

    def submit(self, handle: Any, method: str, *args: Any) -> Any:
        return getattr(handle, method).remote(*args)

    def gather(self, futures: dict[int, Any]) -> tuple[dict[int, Any], list[int]]:
        import ray

        ray.wait(list(futures.values()), num_returns=len(futures))
        results, failed = {}, []
        for s, f in futures.items():
            try:
                results[s] = ray.get(f)
            except ray.exceptions.RayTaskError:
                raise  # a bug in the actor's code, not a lost actor: recovering would hide it
            except ray.exceptions.RayError:
                failed.append(s)
        return results, failed
