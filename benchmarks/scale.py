"""How many distinct ~100k-parameter agents fit in 16 GiB as shared genes, against a dense copy each.

Population: 64 founders with the default brain (98,624 parameters = 394 KB of float32 each, cut
into 25 genes of 4096), grown by division until `--agents` agents: every child mutates one of its
25 genes (mutation.mode sparse, fraction 0.04) and keeps the rest shared with its parent; a
mutated gene is lazy, (parent gene, noise offset, sigma), and stored once it is 8 steps from a
stored gene (genes.max_depth). Every agent is checked to be distinct (no two gene lists equal).

Bytes counted: bank rows, gene records and every agent's 25 gene references; the dense side
counts 4 bytes a parameter. Both leave out what both would hold alike (memory vector, fitness,
counters); `with_memory_ratio` adds the 2 KB memory vector to both sides. The population is
measured at `--agents` and extrapolated to 16 GiB with the marginal bytes per agent of its
second half (the founders' genes are paid once). The extrapolation is optimistic for far larger
populations, whose deeper lineages store more genes; `all_stored_ratio` is the floor: every
child's mutated gene stored in full (16 KB + its record and references).

Step throughput: agent-query evaluations/s of the gene-backed forward (materialise a chunk of
agents' brains, each distinct gene once, then the same batched `swarm.brain.forward`) on random
agents of the population, beside the same forward on dense weights of the same shapes; and full
`SwarmModel` steps in gene mode against the dense default at the same population.

    python -m benchmarks.scale [--agents 100000] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

GIB16 = 16 * (1 << 30)


def grow(agents: int, founders: int = 64, seed: int = 0):
    """A GeneBrains pool and the (agents, nb) gene references of a population grown by division."""
    from experiments.spec import validate
    from swarm import brain
    from swarm.genes import GeneBrains
    from swarm.noise import NoiseTable

    spec = validate({"genes": {"enabled": True, "lazy": True, "levels": 0},
                     "mutation": {"mode": "sparse", "fraction": 0.04}})
    gen = torch.Generator().manual_seed(seed)
    noise = NoiseTable(spec.mutation.noise_table, gen)
    pool = GeneBrains(spec, noise, gen)
    refs = [pool.found(brain.init_params(founders, spec.brain, gen))]
    n, half_bytes = founders, None
    while n < agents:
        batch = min(n, agents - n, 8192)
        parents = torch.cat(refs)[torch.randint(0, n, (batch,), generator=gen)]
        refs.append(pool.mutate(parents))
        n += batch
        if half_bytes is None and n >= agents // 2:
            half_bytes, half_n = pool.nbytes(n), n
    refs = torch.cat(refs)
    return spec, pool, refs, (half_n, half_bytes)


def forward_rate(spec, pool, refs, chunk: int, queries: int, rounds: int) -> tuple[float, float]:
    """(gene-backed, dense) agent-query evaluations/s on `chunk` random agents x `queries` queries."""
    from swarm import brain

    gen = torch.Generator().manual_seed(1)
    pool.slots = [refs]
    d, m = spec.brain.embed_dim, spec.brain.memory_dim
    best_genes = best_dense = float("inf")
    for _ in range(rounds):
        s = torch.randint(0, len(refs), (chunk,), generator=gen)
        q = torch.nn.functional.normalize(torch.randn(chunk, queries, d, generator=gen), dim=-1)
        mem = torch.randn(chunk, m, generator=gen)
        t0 = time.perf_counter()
        out = brain.forward(pool.params(0, s), spec.brain, q, mem)
        best_genes = min(best_genes, time.perf_counter() - t0)
        dense = pool.params(0, s).contiguous()
        t0 = time.perf_counter()
        ref = brain.forward(dense, spec.brain, q, mem)
        best_dense = min(best_dense, time.perf_counter() - t0)
        assert torch.equal(out, ref)
    return chunk * queries / best_genes, chunk * queries / best_dense


def step_rate(agents: int, steps: int) -> tuple[float, float]:
    """(gene-mode, dense) SwarmModel steps/s at `agents` agents (two colonies, steady population)."""
    from experiments.spec import validate
    from swarm.model import SwarmModel

    base = {"colony": {"count": 2, "capacity": agents // 2, "initial_agents": agents // 2},
            "environment": {"batch": 256}, "memory": {"capacity": 20_000}, "replication": {"threshold": 40}}
    rates = []
    for extra in ({"genes": {"enabled": True, "lazy": True}, "mutation": {"mode": "sparse", "fraction": 0.04}}, {}):
        model = SwarmModel(validate({**base, **extra}), seed=0)
        model.step()
        t0 = time.perf_counter()
        for _ in range(steps):
            model.step()
        rates.append(steps / (time.perf_counter() - t0))
    return rates[0], rates[1]


def measure(agents: int, chunk: int, rounds: int, step_agents: int, steps: int) -> dict:
    from swarm import brain

    t0 = time.perf_counter()
    spec, pool, refs, (half_n, half_bytes) = grow(agents)
    build = time.perf_counter() - t0
    distinct = len(torch.unique(refs, dim=0))
    held = pool.nbytes(len(refs))
    marginal = (held - half_bytes) / (len(refs) - half_n)
    shared_agents = int(len(refs) + (GIB16 - held) / marginal)
    dense_bytes = brain.param_count(spec.brain) * 4
    dense_agents = GIB16 // dense_bytes
    mem = spec.brain.memory_dim * 4
    with_mem = int(len(refs) + (GIB16 - held - len(refs) * mem) / (marginal + mem))
    stored = pool.B * 4 + 48 + pool.nb * 8  # worst case: every child's new gene stored in full
    gene_rate, dense_rate = forward_rate(spec, pool, refs, chunk, 4, rounds)
    gene_steps, dense_steps = step_rate(step_agents, steps)
    return {
        "ratio": shared_agents / dense_agents, "value": shared_agents, "reference": dense_agents,
        "unit": "distinct agents in 16 GiB", "agents": shared_agents,
        "with_memory_ratio": with_mem / (GIB16 // (dense_bytes + mem)),
        "all_stored_ratio": (GIB16 // stored) / dense_agents,
        "bytes_per_agent": held / len(refs), "marginal_bytes_per_agent": marginal, "dense_bytes_per_agent": dense_bytes,
        "measured_agents": len(refs), "distinct_agents": distinct, "measured_bytes": held, "build_seconds": build,
        "forward_evals_per_s": gene_rate, "dense_forward_evals_per_s": dense_rate,
        "forward_ratio": gene_rate / dense_rate,
        "steps_per_s": gene_steps, "dense_steps_per_s": dense_steps,
        "sizes": {"params_per_agent": brain.param_count(spec.brain), "genes_per_agent": pool.nb, "block": pool.B,
                  "forward_chunk": chunk, "step_agents": step_agents, "steps": steps},
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=100_000, help="population actually built and measured")
    ap.add_argument("--quick", action="store_true", help="a seconds-long smoke variant")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args()
    if args.quick:
        r = measure(2000, chunk=32, rounds=1, step_agents=128, steps=1)
    else:
        r = measure(args.agents, chunk=512, rounds=3, step_agents=2000, steps=5)
    print(f"built {r['measured_agents']:,} agents ({r['distinct_agents']:,} distinct) in {r['build_seconds']:.1f} s: "
          f"{r['measured_bytes'] / 1e6:,.1f} MB, {r['bytes_per_agent']:,.0f} B/agent "
          f"(marginal {r['marginal_bytes_per_agent']:,.0f} B; dense {r['dense_bytes_per_agent']:,} B)")
    print(f"{'shared genes, agents in 16 GiB':<36}{r['value']:>14,} (extrapolated)")
    print(f"{'dense copies, agents in 16 GiB':<36}{r['reference']:>14,}")
    print(f"{'ratio':<36}{r['ratio']:>14.1f}   (target >= 20; {r['with_memory_ratio']:.1f} counting memory vectors)")
    print(f"{'if every new gene were stored':<36}{r['all_stored_ratio']:>14.1f}   (no lazy genes: the worst case)")
    print(f"{'forward, gene-backed':<36}{r['forward_evals_per_s']:>14,.0f} agent-query evals/s")
    print(f"{'forward, dense weights':<36}{r['dense_forward_evals_per_s']:>14,.0f} agent-query evals/s")
    print(f"{'SwarmModel steps/s, genes vs dense':<36}{r['steps_per_s']:>14.2f} vs {r['dense_steps_per_s']:.2f} "
          f"({r['sizes']['step_agents']} agents)")
    if args.json:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
