"""The Ray backend: colonies as actors, the shared memory as a DHT over shard actors, the broker.

Who holds what. A colony actor (`swarm.ray_actors.ColonyWorker`) holds its colony's brains
(S, P) (with genes.enabled, its colony's gene pool) and memory vectors (S, M), and answers a
whole step's (slot, query) pairs in one call; the driver sends every colony its pairs at once
and waits on all of them together. The driver keeps the light
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
from swarm.colony import ColonyState
from swarm.dht import DistributedMemory
from swarm.params import BackendParams, SwarmSpec
from swarm.ray_actors import ColonyWorker, RayTransport, ShardActor
from swarm.sharing import colony_brains

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
        self.widths = (max(param_count(b) for b in colony_brains(spec)), spec.brain.memory_dim)
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
        colony = self.model.colonies[c]  # its brain width and width adapter (sharing.widths)
        self.workers[c] = self.worker_cls.remote(c, full, colony.brain_params, self.noise_ref, self.projection_ref,
                                                 self.spec.reproduction, self.spec if self.spec.genes.enabled else None,
                                                 colony.adapter)

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

        results = self._ask_all("gene_metrics")
        return GeneStats.combine([results[c] for c in sorted(results)])

    # ---- checkpoints and faults ----------------------------------------------------------------
    def _ask_all(self, method: str) -> dict[int, Any]:
        """Every colony actor's answer to `method()`; a lost colony is recovered and asked again."""
        results, failed = self._gather({c: getattr(w, method).remote() for c, w in self.workers.items()})
        if failed:
            results.update(self._gather({c: getattr(self.workers[c], method).remote() for c in failed})[0])
        return results

    def colony_dicts(self, model: SwarmModel) -> list[dict[str, torch.Tensor]]:
        results = self._ask_all("heavy")
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
