"""`SwarmModel`: the whole simulation as a mesa Model whose agents are colonies.

One step (DESIGN.md, system 1): the environment draws a batch of queries -> the shared memory
returns the best stored answers for similar queries -> gossip picks k agents per query (some
routed to the authors of the best hits) -> every colony answers its pairs in one batched pass ->
consensus over agent answers and memory hits -> feedback becomes fitness -> each query's best
agent answer is stored -> counters rise -> agents past their threshold divide -> metrics.

Every random draw comes from one generator seeded from the mesa model's seeded rng.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any

import mesa
import torch

from swarm import brain, evolution, query
from swarm.backend import make_backend
from swarm.colony import Colony, ColonyState
from swarm.environment import REGISTRY as ENVIRONMENTS
from swarm.lineage import LineageLog
from swarm.metrics import quantiles, specialization_index
from swarm.noise import NoiseTable
from swarm.params import SwarmSpec
from swarm.sharing import METRICS as SHARING_METRICS
from swarm.sharing import Exchange, attach_width_adapters, colony_brains

METRICS = (
    "population", "births", "deaths", "queries", "fitness_mean", "fitness_max", "fitness_p10",
    "fitness_p50", "fitness_p90", "quality", "agent_quality", "accuracy", "thumbs_up",
    "memory_entries", "memory_hit_rate", "memory_evictions", "routed_share", "specialization",
    "lineages", "malicious_share", "seconds",
)


class SwarmModel(mesa.Model):
    """The swarm. `step()` advances one batch of queries; `metrics` holds the last step's values."""

    def __init__(self, spec: SwarmSpec, seed: int = 0):
        super().__init__(seed=seed)
        self.spec = spec
        self.gen = torch.Generator().manual_seed(int(self.rng.integers(2**62)))
        d, m = spec.brain.embed_dim, spec.brain.memory_dim
        self.environment = ENVIRONMENTS[spec.environment.name](spec.environment, d, self.gen)
        self.backend = make_backend(spec)
        self.memory = self.backend.make_memory(d, self.gen)
        self.noise = NoiseTable(spec.mutation.noise_table, self.gen)
        self.projection = torch.randn(d, m, generator=self.gen) / math.sqrt(d)  # (D, M) query -> memory
        self.lineage = LineageLog()
        self.totals = {"births": 0, "deaths": 0, "queries": 0}
        self.capacity = spec.colony.capacity
        n0 = spec.colony.initial_agents
        brains = colony_brains(spec)  # one BrainParams per colony (widths differ with sharing.widths)
        n_params = max(brain.param_count(b) for b in brains)  # narrower brains leave a tail unused
        self.colonies: list[Colony] = []
        for c in range(spec.colony.count):
            st = ColonyState.empty(self.capacity, n_params, m, spec.environment.niches)
            ids = torch.arange(c * n0, (c + 1) * n0)
            st.params[:n0, : brain.param_count(brains[c])] = brain.init_params(n0, brains[c], self.gen)
            st.alive[:n0] = True
            st.agent_id[:n0] = ids
            st.root_id[:n0] = ids
            n_bad = round(spec.environment.malicious * n0) if spec.environment.malicious_step == 0 else 0
            if n_bad:  # no draw at all without malicious agents: clean runs keep their random stream
                st.malicious[torch.randperm(n0, generator=self.gen)[:n_bad]] = True
            self.colonies.append(Colony(self, c, st, brains[c]))
            self.lineage.add_births(ids, torch.full_like(ids, -1), ids, torch.full_like(ids, c), 0)
        self.next_id = spec.colony.count * n0
        self.genes = None  # the shared gene pool (serial); on Ray each colony actor holds its own
        if spec.genes.enabled and self.backend.name == "serial":  # brains as gene references (swarm/genes.py)
            from swarm.genes import GeneBrains

            self.genes = GeneBrains(spec, self.noise, self.gen)
            self.genes.adopt(self.colonies)
        if spec.sharing.widths:
            attach_width_adapters(self)
        self.sharing = Exchange(spec, self.memory, self.gen) if spec.sharing.enabled else None
        self.backend.start(self)
        if spec.genes.enabled:
            from swarm.genes import GeneBrains

            names = METRICS + GeneBrains.metric_names(spec)
        else:
            names = METRICS
        names += SHARING_METRICS if self.sharing is not None else ()
        self.metrics: dict[str, float] = {name: 0.0 for name in names}
        self.datacollector = mesa.DataCollector(
            model_reporters={name: (lambda model, key=name: model.metrics[key]) for name in names}
        )

    # ---- views over all colonies -------------------------------------------------------------
    @property
    def states(self) -> list[ColonyState]:
        return [c.state for c in self.colonies]

    def _global(self, name: str) -> torch.Tensor:
        """(C * S, ...) per-slot tensor `name` across colonies; global index = colony * S + slot."""
        return torch.cat([getattr(st, name) for st in self.states])

    def _locate(self, agent_ids: torch.Tensor) -> torch.Tensor:
        """Global slot index of each agent id, -1 where the agent is dead or the id is -1."""
        return self._locate_in(self._global("agent_id"), agent_ids)

    @staticmethod
    def _locate_in(ids: torch.Tensor, agent_ids: torch.Tensor) -> torch.Tensor:
        """Index of each of `agent_ids` in the (C S,) slot ids `ids`, -1 where absent."""
        order = torch.argsort(ids)
        pos = torch.searchsorted(ids[order], agent_ids).clamp_max(len(ids) - 1)
        found = (ids[order][pos] == agent_ids) & (agent_ids >= 0)
        return torch.where(found, order[pos], torch.full_like(agent_ids, -1))

    # ---- one step ----------------------------------------------------------------------------
    def step(self) -> None:
        t0 = time.perf_counter()
        step = self.steps
        env = self.spec.environment
        if env.malicious_step and step == env.malicious_step:
            self._compromise(env.malicious)
        batch = self.environment.sample(step, self.gen)
        r = query.respond(self, batch.queries, batch.target)
        self.last_batch, self.last_response = batch, r  # what consensus saw (claims re-run other rules on it)
        quality = self.environment.feedback(r.answer, batch.target)  # (B,)
        rewards = self.environment.feedback(r.responses, batch.target.unsqueeze(1))  # (B, k)
        query.learn(self, r, rewards, batch.niche, step)
        if self.sharing is not None:  # votes and fitness reports on the memory hits, from feedback
            hit_rewards = self.environment.feedback(r.hits.response, batch.target.unsqueeze(1))  # (B, h)
            self.sharing.judge(r, rewards, hit_rewards, self.capacity, step)
        births, died = self.reproduce(step)
        self.totals["queries"] += len(batch.queries)

        self._measure(births, died, quality, rewards, r.answer, batch, r.hits, r.routed, time.perf_counter() - t0)
        self.datacollector.collect(self)

    def _compromise(self, share: float) -> None:
        """Turn `share` of each colony's living agents malicious (drawn from the model's generator)."""
        for st in self.states:
            alive = st.alive.nonzero().squeeze(1)  # (n,)
            st.malicious[alive[torch.randperm(len(alive), generator=self.gen)[: round(share * len(alive))]]] = True

    def reproduce(self, step: int) -> tuple[evolution.Births, torch.Tensor]:
        """Let agents past their threshold divide; record births and deaths. Returns both."""
        before = self._global("agent_id") if self.genes is not None else None
        births, died = self.backend.divide(self, step)
        self.last_births = births
        if self.genes is not None:  # children share their parents' unmutated genes
            self.genes.after_divide(self, before)
        self.next_id += len(births.agent_id)
        self.lineage.add_births(births.agent_id, births.parent_id, births.root_id, births.colony, step,
                                mates=births.mate_id)
        self.lineage.add_deaths(died, step)
        self.last_births, self.last_deaths = births, died
        self.totals["births"] += len(births.agent_id)
        self.totals["deaths"] += len(died)
        return births, died

    def _store(self, queries, answers, rewards, chosen, step) -> None:
        """Write each query's best agent answer (or all of them) to the shared memory."""
        ids = self._global("agent_id")[chosen]  # (B, k)
        if self.sharing is not None:  # each query's best answer, shared by its agent's colony
            rows, best = torch.arange(len(queries)), rewards.argmax(1)
            self.sharing.share(queries, answers[rows, best], ids[rows, best], rewards[rows, best],
                               chosen[rows, best] // self.capacity, step, self.gen)
            return
        if self.spec.memory.store == "best":
            best = rewards.argmax(1)  # (B,)
            rows = torch.arange(len(queries))
            self.memory.store(queries, answers[rows, best], ids[rows, best], rewards[rows, best], step)
        else:
            k = chosen.shape[1]
            self.memory.store(
                queries.repeat_interleave(k, 0), answers.flatten(0, 1), ids.flatten(), rewards.flatten(), step
            )

    def _measure(self, births, died, quality, rewards, answer, batch, hits, routed, seconds) -> None:
        alive = self._global("alive")
        fit = self._global("fitness")[alive]
        p10, p50, p90 = quantiles(fit, (0.1, 0.5, 0.9))
        k = self.spec.environment.niches
        self.metrics = {
            "population": float(alive.sum()),
            "births": float(len(births.agent_id)),
            "deaths": float(len(died)),
            "queries": float(len(quality)),
            "fitness_mean": float(fit.mean()) if len(fit) else 0.0,
            "fitness_max": float(fit.max()) if len(fit) else 0.0,
            "fitness_p10": p10, "fitness_p50": p50, "fitness_p90": p90,
            "quality": float(quality.mean()),
            "agent_quality": float(rewards.mean()),
            "accuracy": float((self.environment.decode(answer) == batch.label).float().mean()),
            "thumbs_up": float((quality > self.spec.environment.thumbs_up).float().mean()),
            "memory_entries": float(self.memory.size),
            "memory_hit_rate": float(hits.valid.any(1).float().mean()),
            "memory_evictions": float(self.memory.evicted),
            "routed_share": float(routed.float().mean()),
            "specialization": specialization_index(self._global("niche_served")[alive], 5.0 * k),
            "lineages": float(len(torch.unique(self._global("root_id")[alive]))),
            "malicious_share": float(self._global("malicious")[alive].float().mean()) if bool(alive.any()) else 0.0,
            "seconds": seconds,
        }
        if self.genes is not None:
            self.metrics.update(self.genes.metrics(int(alive.sum())))
        elif self.spec.genes.enabled:  # Ray: summed over the colony actors' pools
            self.metrics.update(self.backend.gene_metrics(self))
        if self.sharing is not None:
            self.metrics.update(self.sharing.metrics())

    def close(self) -> None:
        """Release the backend's workers (Ray actors); the model can no longer step."""
        self.backend.close()

    # ---- snapshots and checkpoints -----------------------------------------------------------
    def agent_table(self) -> dict[str, torch.Tensor]:
        """Living agents: id, parent, root, colony, fitness, counter, birth step, niche profiles."""
        alive = self._global("alive")
        colony = torch.arange(len(self.colonies)).repeat_interleave(self.capacity)
        return {
            "agent_id": self._global("agent_id")[alive],
            "parent_id": self._global("parent_id")[alive],
            "root_id": self._global("root_id")[alive],
            "colony": colony[alive],
            "fitness": self._global("fitness")[alive],
            "counter": self._global("counter")[alive],
            "birth_step": self._global("birth_step")[alive],
            "niche_served": self._global("niche_served")[alive],
            "niche_reward": self._global("niche_reward")[alive],
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "next_id": self.next_id,
            "totals": dict(self.totals),
            "colonies": self.backend.colony_dicts(self),
            "memory": self.memory.state_dict(),
            "lineage": self.lineage.state_dict(),
            "torch_rng": self.gen.get_state(),
            "numpy_rng": self.rng.bit_generator.state,
            "python_rng": self.random.getstate(),
            **({"genes": self.genes.state_dict()} if self.genes is not None else {}),
            **({"sharing": self.sharing.state_dict()} if self.sharing is not None else {}),
        }

    def load_state_dict(self, d: dict[str, Any]) -> None:
        """Restore a `state_dict()`; the tensors are copied, never shared with `d`."""
        d = copy.deepcopy(d)
        if ("sharing" in d) != (self.sharing is not None):  # before anything changes
            raise ValueError(f"a checkpoint {'with' if 'sharing' in d else 'without'} sharing state cannot "
                             f"load into a model with sharing.enabled = {self.sharing is not None}")
        if self.genes is not None and "genes" not in d:
            raise ValueError("this checkpoint holds gene brains in its colony actors (written by the Ray "
                             "backend); resume it with --ray")
        if self.sharing is not None:  # first: its identity check fails before the model changes
            self.sharing.load_state_dict(d["sharing"])
        self.steps = int(d["steps"])
        self.next_id = int(d["next_id"])
        self.totals = {key: int(v) for key, v in d["totals"].items()}
        self.backend.load_colony_dicts(self, d["colonies"])
        self.memory.load_state_dict(d["memory"])
        self.lineage.load_state_dict(d["lineage"])
        self.gen.set_state(d["torch_rng"])
        self.rng.bit_generator.state = d["numpy_rng"]
        self.random.setstate(d["python_rng"])
        if self.genes is not None:
            self.genes.load_state_dict(d["genes"])
            for colony in self.colonies:
                colony.state.params = colony.state.params[:, :0]
                colony.genes = self.genes
