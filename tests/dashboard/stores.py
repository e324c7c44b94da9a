"""Small run stores written with the real writer (`experiments.store.RunStore`) for the dashboard tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from experiments.store import RunStore

NICHES = 4
TIERS = ["PRISTINE", "HEALTHY", "DEGRADED", "DEAD"]
ROLES = ["attention", "mlp", "embedding", "norm", "head"]
STATUSES = ["ACTIVE", "OPTIMIZED", "DEPRECATED", "ARCHIVED"]


def open_run(run_dir: Path, steps_total: int = 40, sweep_id: str | None = None,
             params: dict | None = None, seed: int = 0, backend: str = "serial") -> RunStore:
    run_dir.mkdir(parents=True, exist_ok=True)
    spec = f"run:\n  steps: 40\nbackend:\n  name: {backend}\n  shards: 4\n  replication: 3\n"
    return RunStore.create(run_dir / "run.sqlite", name=run_dir.name.split("-")[0], spec_yaml=spec,
                           seed=seed, version="0.1.0", git_commit="test", steps_total=steps_total,
                           sweep_id=sweep_id, params=params, backend=backend)


class Swarm:
    """A toy population: founders, divisions from living parents, deaths; deterministic per seed."""

    def __init__(self, seed: int = 0, founders: int = 8, capacity: int = 40):
        self.capacity = capacity
        self.rng = np.random.default_rng(seed)
        self.alive = {i: (-1, i, i % 2, 0) for i in range(founders)}  # id -> parent, root, colony, birth
        self.next_id = founders
        self.served = {i: np.zeros(NICHES) for i in range(founders)}
        self.reward = {i: np.zeros(NICHES) for i in range(founders)}

    def founders(self) -> list[tuple[int, int, int, int]]:
        return [(a, p, r, c) for a, (p, r, c, _) in self.alive.items()]

    def step(self, step: int) -> tuple[list[tuple[int, int, int, int]], list[int]]:
        ids = sorted(self.alive)
        for a in ids:  # each agent serves a few queries, mostly from its favourite niche
            niche = a % NICHES if self.rng.random() < 0.8 else int(self.rng.integers(NICHES))
            self.served[a][niche] += 1
            self.reward[a][niche] += self.rng.normal(0.2 + 0.05 * niche, 0.1)
        room = max(0.0, 1.0 - len(ids) / self.capacity)
        parents = [a for a in ids if self.rng.random() < 0.5 * room and self.alive[a][1] % 3 != 2]
        births = []
        for p in parents:
            child = self.next_id
            self.next_id += 1
            _, root, colony, _ = self.alive[p]
            self.alive[child] = (p, root, colony, step)
            self.served[child] = np.zeros(NICHES)
            self.reward[child] = np.zeros(NICHES)
            births.append((child, p, root, colony))
        old = [a for a in ids if self.rng.random() < 0.1][: max(0, len(self.alive) - 4)]
        for a in old:
            del self.alive[a]
        return births, old

    def snapshot(self) -> list[tuple]:
        rows = []
        for a, (p, r, c, b) in sorted(self.alive.items()):
            served = self.served[a]
            quality = [None if n == 0 else round(float(q / n), 4) for q, n in zip(self.reward[a], served)]
            rows.append((a, p, r, c, float(self.rng.random()), int(served.sum()), b, served.astype(int).tolist(),
                         quality))
        return rows


def metrics_row(step: int, swarm: Swarm, births: int, deaths: int, rng: np.random.Generator, pool: bool,
                shards: int, sharing: bool = False) -> dict[str, float]:
    pop = float(len(swarm.alive))
    fit = np.sort(rng.random(int(pop))) * (0.2 + step / 100)
    row = {
        "population": pop, "births": float(births), "deaths": float(deaths), "queries": 32.0,
        "fitness_mean": float(fit.mean()), "fitness_max": float(fit.max()),
        "fitness_p10": float(np.quantile(fit, 0.1)), "fitness_p50": float(np.quantile(fit, 0.5)),
        "fitness_p90": float(np.quantile(fit, 0.9)), "quality": 0.1 + step / 200, "agent_quality": 0.05 + step / 400,
        "accuracy": min(1.0, 0.3 + step / 100), "thumbs_up": min(1.0, step / 80), "memory_entries": 32.0 * step,
        "memory_hit_rate": min(1.0, step / 20), "memory_evictions": float(max(0, step - 20) * 4),
        "routed_share": 0.3, "specialization": min(1.0, step / 50),
        "lineages": float(len({v[1] for v in swarm.alive.values()})),
        "seconds": 0.01 + 0.001 * (step % 3),
    }
    if pool:
        genes = 100.0 + 10 * step
        row.update({"pool_genes": genes, "pool_unique_l1": genes * 0.8, "pool_unique_l2": genes * 0.7,
                    "pool_unique_l3": genes * 0.6, "pool_unique_l4": genes * 0.5,
                    "pool_bytes": genes * 0.5 * 4e5, "pool_bytes_naive": genes * 4e5, "pool_dedup_ratio": 2.0})
        row.update({f"pool_tier_{t}": genes * w for t, w in zip(TIERS, (0.4, 0.3, 0.2, 0.1))})
        row.update({f"pool_role_{r}": genes / len(ROLES) for r in ROLES})
        row.update({f"pool_status_{s}": genes * w for s, w in zip(STATUSES, (0.7, 0.2, 0.08, 0.02))})
    if sharing:  # running totals, as swarm.sharing.Exchange reports them: 6 entries in 2 batches a step
        row.update({"shared_batches": 2.0 * step, "shared_entries": 6.0 * step, "shared_rejected": float(step // 5),
                    "shared_bytes": 600.0 * step, "shared_ratio": 8.0, "entries_voted_out": float(step // 4),
                    "entries_unvetted_out": float(step // 10), "registry_size": 6.0 * step,
                    "malicious_vote_weight": 0.3 * 0.95 ** step})
    for i in range(shards):
        row[f"shard_{i}_entries"] = 10.0 * step + i
        row[f"shard_{i}_replicas_ok"] = 3.0 if (step + i) % 17 else 2.0
    return row


def write_run(run_dir: Path, steps: int = 40, *, steps_total: int | None = None, seed: int = 0,
              pool: bool = False, shards: int = 0, snapshot_every: int = 10, status: str = "finished",
              sweep_id: str | None = None, params: dict | None = None, quality_shift: float = 0.0,
              sharing: bool = False, faults: dict[int, list[dict]] | None = None, backend: str = "serial") -> Path:
    """A whole run: founders at step 0, `steps` steps of metrics, lineage and snapshots, final status.

    `faults` maps a step to the fault details recorded after it (as the runner writes a Ray backend's).
    """
    store = open_run(run_dir, steps_total or steps, sweep_id, params, seed, backend)
    swarm = Swarm(seed)
    rng = np.random.default_rng(seed + 1)
    store.write_step(0, {}, births=swarm.founders())
    for step in range(1, steps + 1):
        births, deaths = swarm.step(step)
        row = metrics_row(step, swarm, len(births), len(deaths), rng, pool, shards, sharing)
        row["quality"] += quality_shift
        store.write_step(step, row, births=births, deaths=deaths)
        for fault in (faults or {}).get(step, []):
            store.event(step, "fault", fault)
        if snapshot_every and step % snapshot_every == 0:
            store.write_snapshot(step, swarm.snapshot())
    if status != "running":
        store.set_status(status, error="RuntimeError: boom" if status == "failed" else None)
    store.close()
    return run_dir


def write_sweep(root: Path, sweep_id: str = "sweep-a", steps: int = 20) -> list[Path]:
    """A 2 x 2 sweep over mutation.sigma and replication.threshold, one seed each."""
    out = []
    for i, sigma in enumerate((0.01, 0.02)):
        for j, threshold in enumerate((10, 20)):
            run = root / sweep_id / f"swp-{i}{j}"
            out.append(write_run(run, steps, seed=i * 2 + j, sweep_id=sweep_id, snapshot_every=0,
                                 params={"mutation.sigma": sigma, "replication.threshold": threshold},
                                 quality_shift=sigma * 5 + threshold / 100))
    return out
