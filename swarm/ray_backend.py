"""The Ray backend: colonies as actors, the shared memory as a DHT over shard actors, the broker.

Who holds what. A colony actor (`ColonyWorker`) holds its colony's brains (S, P) (or, with
genes.enabled, its colony's gene pool: `swarm.genes.GeneBrains`) and memory vectors (S, M) and answers a whole step's (slot, query) pairs in one call; the driver sends every
colony its pairs at once and waits on all of them together. The driver keeps the light
per-agent tensors (ids, fitness, counters, alive) and draws every random number, so a Ray run
is as reproducible as a serial one given its seed.

The broker. `evolution.divide` places children (own colony if it has room, else the colony with
most room, else a victim's slot) on the light states; the actors then copy the parents' rows.
Parents in another colony are exported once per (source, target) pair and step as one object in
the object store, which the target reads directly; the noise table goes to the object store once.

Faults. A colony actor that dies (or fails a call) is replaced by a new actor whose agents come
back from the last checkpoint: an agent in the checkpoint gets its checkpointed brain and memory;
an agent born since gets its parent's checkpointed rows, else those of a checkpointed agent of
its lineage (same root), else the first checkpointed agent's. Who lives where never changes, so
the population is whole again at once. Shards are handled by `DistributedMemory`. Every fault is
returned by `drain_faults` for the run store.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from genome.errors import BadInput
from swarm import evolution
from swarm.backend import SerialBackend
from swarm.brain import param_count
from swarm.colony import Colony, ColonyState
from swarm.crossover import parents_rows
from swarm.dht import DistributedMemory
from swarm.noise import NoiseTable
from swarm.params import BackendParams, BrainParams, ReproductionParams, SwarmSpec
from swarm.shard import MemoryShard

if TYPE_CHECKING:
    from swarm.model import SwarmModel

ROOT = Path(__file__).resolve().parents[1]


def init_options(backend: BackendParams) -> dict[str, Any]:
    """`ray.init` keyword arguments: workers import this checkout of the code; a local Ray is small."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    opts: dict[str, Any] = {"log_to_driver": False, "runtime_env": {"env_vars": {"PYTHONPATH": path}}}
    if backend.address:
        opts["address"] = backend.address
    else:
        opts.update(include_dashboard=False, object_store_memory=backend.object_store_mb * 1024**2)
    return opts


def connect(backend: BackendParams) -> bool:
    """Start or join Ray unless it runs already; returns whether this call started it."""
    import ray

    if ray.is_initialized():
        return False
    address = backend.address
    if address and address != "auto":
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host or "127.0.0.1", int(port)), timeout=3).close()
        except (OSError, ValueError):
            raise BadInput(f"cannot reach a Ray cluster at --address {address} "
                           "(start one with `ray start --head`, or give auto)") from None
    try:
        ray.init(**init_options(backend))
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise BadInput(f"cannot join the Ray cluster at --address {address}: {err}") from None
    return True


class ShardActor(MemoryShard):
    """A memory shard as a Ray actor, able to say which node it runs on (for zone-aware placement)."""

    def node(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()


class ColonyWorker:
    """One colony's full `ColonyState`, brains and memory vectors included, in its own process."""

    def __init__(self, index: int, state: dict[str, Any], brain_params: BrainParams,
                 noise: NoiseTable, projection: torch.Tensor,
                 reproduction: ReproductionParams | None = None, genes: SwarmSpec | None = None):
        """`genes`: the spec, when brains are gene references (genes.enabled): this actor then
        holds its colony's genes in a `GeneBrains` of its own, built from the dense (S, P) brains
        in `state`, or restored from ``state["genes"]`` (a checkpoint's `heavy()`)."""
        torch.set_num_threads(1)  # one core per actor; parallelism comes from the actors
        self.index, self.brain_params, self.genes, self.adapter = index, brain_params, None, None
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


def _light(st: ColonyState) -> ColonyState:
    d = st.to_dict()
    d["params"], d["memory"] = st.params[:, :0].clone(), st.memory[:, :0].clone()
    return ColonyState.from_dict(d)


class RayBackend(SerialBackend):
    name = "ray"

    def __init__(self, spec: SwarmSpec):
        super().__init__(spec)
        import ray

        self.ray = ray
        self.owns_ray = connect(spec.backend)
        opts = {"num_cpus": spec.backend.actor_cpus, "scheduling_strategy": "SPREAD", "max_restarts": 0}
        self.worker_cls = ray.remote(ColonyWorker).options(**opts)
        self.shard_cls = ray.remote(ShardActor).options(**opts)
        self.workers: dict[int, Any] = {}
        self.faults: list[dict[str, Any]] = []
        self.checkpoint: dict[str, Any] | None = None
        self.widths = (param_count(spec.brain), spec.brain.memory_dim)
        self.memory: DistributedMemory | None = None

    # ---- setup -------------------------------------------------------------------------------
    def make_memory(self, dim: int, gen: torch.Generator) -> DistributedMemory:
        def spawn(s: int, capacity: int, planes: torch.Tensor) -> Any:
            return self.shard_cls.remote(s, self.spec.memory, dim, planes, capacity)

        def locate(handle: Any) -> str:
            return self.ray.get(handle.node.remote(), timeout=60)

        self.memory = DistributedMemory(self.spec.memory, dim, gen, self.spec.backend, spawn, RayTransport(), locate)
        return self.memory

    def start(self, model: SwarmModel) -> None:
        self.model = model
        self.noise_ref = self.ray.put(model.noise)  # the shared noise table, once
        self.projection_ref = self.ray.put(model.projection)
        self.load_colony_dicts(model, [st.to_dict() for st in model.states])

    def _spawn(self, c: int, full: dict[str, torch.Tensor]) -> None:
        old = self.workers.get(c)
        if old is not None:
            self.ray.kill(old)
        self.workers[c] = self.worker_cls.remote(c, full, self.spec.brain, self.noise_ref, self.projection_ref,
                                                 self.spec.reproduction, self.spec if self.spec.genes.enabled else None)

    def _gather(self, futures: dict[int, Any]) -> tuple[dict[int, Any], list[int]]:
        results, failed = RayTransport().gather(futures)
        for c in failed:
            self._recover(c)
        return results, failed

    # ---- the step ----------------------------------------------------------------------------
    def answer(self, model: SwarmModel, pair_agent: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        answers = torch.empty(len(pair_agent), self.spec.brain.embed_dim)
        masks = {c.index: (pair_agent // model.capacity) == c.index for c in model.colonies}
        todo = set(masks)
        for _ in range(3):  # a colony lost mid-call is recovered, then asked again
            futures = {c: self.workers[c].answer.remote(pair_agent[masks[c]] % model.capacity, queries[masks[c]])
                       for c in todo}
            results, _ = self._gather(futures)
            for c, out in results.items():
                answers[masks[c]] = out
            todo -= set(results)
            if not todo:
                return answers
        raise RuntimeError(f"colonies {sorted(todo)} failed three times in a row")

    def record(self, model: SwarmModel, pair_agent: torch.Tensor, rewards: torch.Tensor, niches: torch.Tensor,
               queries: torch.Tensor, step: int, decay: float) -> None:
        futures = {}
        for colony in model.colonies:  # light tensors here, memory vectors in the actor
            mine = (pair_agent // model.capacity) == colony.index
            slots = pair_agent[mine] % model.capacity
            colony.record(slots, rewards[mine], niches[mine], queries[mine], model.projection[:, :0], step, decay, 0.0)
            futures[colony.index] = self.workers[colony.index].record.remote(
                slots, rewards[mine], niches[mine], queries[mine], step, decay)
        self._gather(futures)

    def divide(self, model: SwarmModel, step: int) -> tuple[evolution.Births, torch.Tensor]:
        """The broker: `evolution.divide` on the light states, then the actors copy parents' rows."""
        before = model._global("agent_id").clone()  # (C S,)
        alive_before = model._global("alive").clone()
        births, died = evolution.divide(model.states, self.spec, model.noise, step, model.next_id, model.gen,
                                        widths=self.widths)
        cap = model.capacity
        parent = model._locate_in(before, births.parent_id)  # (n,) global slot of each parent
        child = model._locate(births.agent_id)  # (n,) global slot of each child
        changed = (model._global("alive") != alive_before).view(len(model.colonies), cap).any(1)
        futures = {}
        m = self.spec.mutation
        seed = births.merge_seed  # crossover's merge seed; with genes, each colony's mutation seed
        if self.spec.genes.enabled:  # (genes run division only) drawn from the driver's stream
            seed = int(torch.randint(0, 2**62, (1,), generator=model.gen))
        for t in range(len(model.colonies)):  # a loop over colonies, never over agents
            into = births.colony == t
            if not bool(into.any()):
                if bool(changed[t]):
                    futures[t] = self.workers[t].set_alive.remote(model.colonies[t].state.alive.clone())
                continue
            src = parent[into] // cap
            order = torch.argsort(torch.where(src == t, -1, src), stable=True)  # local parents first
            rows = into.nonzero().squeeze(1)[order]
            src = src[order]
            mates = births.mate_slot  # crossover: each parent's partner slot in its own colony, else None
            remote = [self.workers[s].export.remote(parent[rows[src == s]] % cap,
                                                    None if mates is None else mates[rows[src == s]],
                                                    births.merge_seed)
                      for s in torch.unique(src).tolist() if s != t]
            futures[t] = self.workers[t].births.remote(
                model.colonies[t].state.alive.clone(), child[rows] % cap, parent[rows[src == t]] % cap, remote,
                births.noise_offset[rows], births.memory_offset[rows], m.sigma, m.sigma_memory,
                None if mates is None else mates[rows[src == t]], seed + t if self.spec.genes.enabled else seed)
        self._gather(futures)
        return births, died

    def gene_metrics(self, model: SwarmModel) -> dict[str, float]:
        """pool_* metrics summed over the colony actors' gene pools."""
        from swarm.gene_stats import GeneStats

        results, failed = self._gather({c: w.gene_metrics.remote() for c, w in self.workers.items()})
        if failed:  # recovered colonies answer now
            results.update(self._gather({c: self.workers[c].gene_metrics.remote() for c in failed})[0])
        return GeneStats.combine([results[c] for c in sorted(results)])

    # ---- checkpoints and faults ----------------------------------------------------------------
    def colony_dicts(self, model: SwarmModel) -> list[dict[str, torch.Tensor]]:
        results, failed = self._gather({c: w.heavy.remote() for c, w in self.workers.items()})
        if failed:  # recovered colonies answer now
            results.update(self._gather({c: self.workers[c].heavy.remote() for c in failed})[0])
        dicts = []
        for colony in model.colonies:
            d = colony.state.to_dict()
            d.update(results[colony.index])  # params, memory (and the colony's genes)
            dicts.append(d)
        self._remember(dicts, model.steps)
        return dicts

    def load_colony_dicts(self, model: SwarmModel, dicts: list[dict[str, torch.Tensor]]) -> None:
        if self.spec.genes.enabled and dicts and dicts[0]["params"].shape[1] == 0:
            raise ValueError("this checkpoint holds gene brains in one pool (written by the serial backend); "
                             "resume it without --ray")
        for colony, d in zip(model.colonies, dicts, strict=True):
            self._spawn(colony.index, d)
            colony.state = _light(ColonyState.from_dict(d))
        self._remember(dicts, model.steps)

    def _remember(self, dicts: list[dict[str, torch.Tensor]], step: int) -> None:
        """Keep the living agents' rows of the last checkpoint: what a lost colony comes back from."""
        alive = torch.cat([d["alive"] for d in dicts])
        ids = torch.cat([d["agent_id"] for d in dicts])[alive]
        order = torch.argsort(ids)
        self.checkpoint = {
            "step": step, "agent_id": ids[order],
            "root_id": torch.cat([d["root_id"] for d in dicts])[alive][order],
            "params": torch.cat([d["params"] for d in dicts])[alive][order].clone(),
            "memory": torch.cat([d["memory"] for d in dicts])[alive][order].clone(),
        }

    def _recover(self, c: int) -> None:
        """Replace colony c's actor; its agents come back from the last checkpoint (see module doc)."""
        ck, st = self.checkpoint, self.model.colonies[c].state
        slots = st.alive.nonzero().squeeze(1)
        ids = ck["agent_id"]

        def find(wanted: torch.Tensor) -> torch.Tensor:
            pos = torch.searchsorted(ids, wanted).clamp_max(len(ids) - 1)
            return torch.where(ids[pos] == wanted, pos, -1)

        row = find(st.agent_id[slots])
        exact = row >= 0
        row = torch.where(exact, row, find(st.parent_id[slots]))
        by_root = torch.where(ck["root_id"].unsqueeze(0) == st.root_id[slots].unsqueeze(1), 1, 0).argmax(1)
        has_root = (ck["root_id"].unsqueeze(0) == st.root_id[slots].unsqueeze(1)).any(1)
        row = torch.where(row >= 0, row, torch.where(has_root, by_root, 0))
        full = st.to_dict()
        full["params"] = torch.zeros(len(st.alive), self.widths[0])
        full["memory"] = torch.zeros(len(st.alive), self.widths[1])
        full["params"][slots] = ck["params"][row]
        full["memory"][slots] = ck["memory"][row]
        self._spawn(c, full)
        self.faults.append({"kind": "colony_lost", "colony": c, "agents": len(slots),
                            "from_checkpoint": int(exact.sum()), "respawned_from_lineage": int((~exact).sum()),
                            "checkpoint_step": ck["step"]})

    def drain_faults(self) -> list[dict[str, Any]]:
        out = self.faults + (self.memory.faults if self.memory is not None else [])
        self.faults = []
        if self.memory is not None:
            self.memory.faults = []
        return out

    def close(self) -> None:
        for w in self.workers.values():
            self.ray.kill(w)
        if self.memory is not None:
            for h in self.memory.handles.values():
                self.ray.kill(h)
        self.workers = {}
        if self.owns_ray:
            self.ray.shutdown()
