"""The Ray backend on a several-node `ray.cluster_utils.Cluster` on this machine.

One cluster serves every test here (starting one costs ~15 s): a head that runs no actors and two
worker nodes. Tests check values (metrics, replica counts, run-store events), never wall time.
"""

from __future__ import annotations

import copy

import pytest
import torch

from experiments import reader
from experiments.runner import resume_run, run_spec
from experiments.spec import validate
from swarm.model import SwarmModel
from tests.conftest import SMALL

pytestmark = pytest.mark.ray

RAY = {"name": "ray", "shards": 4, "replication": 3, "virtual_nodes": 32, "actor_cpus": 0.1}


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    from swarm.params import BackendParams
    from swarm.ray_backend import init_options

    mb = 100 * 1024**2
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "object_store_memory": mb,
                                                      "include_dashboard": False})
    workers = [c.add_node(num_cpus=2, object_store_memory=mb) for _ in range(2)]
    ray.init(**init_options(BackendParams(address=c.address)))
    yield c, workers
    ray.shutdown()
    c.shutdown()


def spec(backend: str, steps: int, shards: int = 4, **run):
    d = copy.deepcopy(SMALL)
    d["memory"] = {"capacity": 20000}  # no garbage collection in these short runs: every entry is counted
    d["run"] = {"steps": steps, "checkpoint_every": 5, "snapshot_every": 0, **run}
    if backend == "ray":
        d["backend"] = {**RAY, "shards": shards}
    return validate(d)


def final_metrics(s, seed):
    model = SwarmModel(s.model_copy(update={"run": s.run.model_copy(update={"seed": seed})}), seed=seed)
    rows = []
    for _ in range(s.run.steps):
        model.step()
        rows.append(dict(model.metrics))
    model.close()
    return {k: sum(r[k] for r in rows) / len(rows) for k in ("quality", "agent_quality", "accuracy",
                                                             "population", "births", "memory_entries")}


def test_serial_and_ray_backends_give_the_same_metric_distributions(cluster):
    seeds = (0, 1)
    serial = [final_metrics(spec("serial", 10), s) for s in seeds]
    ray_ = [final_metrics(spec("ray", 10, shards=3), s) for s in seeds]
    for key in serial[0]:
        a = torch.tensor([r[key] for r in serial])
        b = torch.tensor([r[key] for r in ray_])
        spread = float(torch.cat([a, b]).std()) + 0.02 * float(a.abs().mean()) + 1e-9
        # same seed, same driver random stream: the backends differ only in how memory is sharded
        assert abs(float(a.mean() - b.mean())) <= 2 * spread, (key, a.tolist(), b.tolist())
    assert serial[0] != serial[1]  # the seeds do differ


def test_node_removed_mid_run_loses_no_replicated_entry_and_the_run_finishes(cluster, tmp_path):
    import ray

    c, workers = cluster
    seen = {}

    def inject(model, step):
        if step == 7:  # after the checkpoint at step 5: take out the node of colony 0, mid-run
            seen["replicated"] = {u for u, n in model.memory.replica_counts().items() if n == 3}
            seen["zones"] = set(model.memory.zones.values())
            holders = model.memory._call({s: ("uids",) for s in model.memory.handles})
            nodes: dict[int, set[str]] = {}
            for s, uids in holders.items():
                for u in uids.tolist():
                    nodes.setdefault(u, set()).add(model.memory.zones[s])
            seen["spans"] = {len(z) for z in nodes.values()}
            seen["population"] = model.metrics["population"]
            node = ray.get(model.backend.workers[0].node.remote())
            c.remove_node(next(w for w in workers if w.node_id == node))
        if step == 9:  # and kill one memory shard outright
            seen["shards_before"] = set(model.memory.handles)
            ray.kill(model.memory.handles[min(model.memory.handles)])
        if step == 12:
            counts = model.memory.replica_counts()
            seen["kept"] = sum(u in counts for u in seen["replicated"])
            seen["copies"] = {counts[u] for u in seen["replicated"]}
            seen["population_after"] = model.metrics["population"]
            seen["evictions"] = model.metrics["memory_evictions"]

    summary = run_spec(spec("ray", 12), tmp_path, progress=False, on_step=inject)
    assert summary["steps"] == 12
    assert len(seen["replicated"]) > 0
    assert len(seen["zones"]) == 2 and seen["spans"] == {2}  # zone-aware ring: every entry on both nodes
    assert seen["kept"] == len(seen["replicated"])  # zero fully replicated entries lost
    assert seen["copies"] == {3}  # and each is back on three shards
    assert seen["evictions"] == 0
    assert seen["population_after"] >= seen["population"]  # the lost colony's agents came back
    events = reader.events(summary["run_dir"])
    faults = [e for e in events.itertuples() if e.kind == "fault"]
    kinds = {__import__("json").loads(e.detail)["kind"] for e in faults}
    assert {"colony_lost", "shard_lost"} <= kinds
    assert summary["faults"] == len(faults)
    assert reader.run_info(summary["run_dir"]).status == "finished"


def test_driver_killed_then_resumed_on_ray(cluster, tmp_path):
    def die(model, step):
        if step == 7:
            raise KeyboardInterrupt  # the driver goes away between checkpoints 5 and 10

    with pytest.raises(KeyboardInterrupt):
        run_spec(spec("ray", 10), tmp_path, progress=False, on_step=die)
    run_dir = next(tmp_path.iterdir())
    summary = resume_run(run_dir, progress=False)
    assert summary["steps"] == 10
    df = reader.metrics(run_dir)
    assert df["step"].tolist() == list(range(1, 11))
    assert (df["population"] > 0).all()


def test_crossover_on_ray_merges_parents_inside_the_colony_actors(cluster):
    """Crossover with SLERP and no mutation noise: every living child of two living parents holds
    exactly slerp(parent, mate, t), merged in its parent's colony actor from the driver's pairing."""
    from genome.recombine.merge import merge_tensors

    d = spec("ray", 8).model_dump(mode="json")
    d["reproduction"] = {"mode": "crossover", "method": "slerp", "partner_weight": 0.3}
    d["mutation"] = {"sigma": 0.0, "sigma_memory": 0.0}
    model = SwarmModel(validate(d), seed=3)
    for _ in range(8):
        model.step()
    rows = torch.cat([c["params"] for c in model.backend.colony_dicts(model)])  # (C S, P)
    ids = model._global("agent_id")
    alive = model._global("alive")
    slot = {int(i): s for s, i in enumerate(ids.tolist()) if alive[s]}
    parent_of = {int(c): int(p) for c, p in model.lineage.births[:, :2].tolist()}
    checked = 0
    for child, mate in model.lineage.mates.tolist():
        parent = parent_of[child]
        if child in slot and parent in slot and mate in slot:
            want = merge_tensors("slerp", [rows[slot[mate]]], rows[slot[parent]], None, {"t": 0.3})
            torch.testing.assert_close(rows[slot[child]], want)
            checked += 1
    model.close()
    assert len(model.lineage.mates) > 0 and checked > 0


def test_gene_brains_on_ray_share_parent_genes_inside_each_colony_actor(cluster, tmp_path):
    """genes.enabled with sparse mutation on Ray: each colony actor holds its colony's genes; a
    child differs from its parent in exactly the mutated blocks (the rest are shared genes), the
    pool_* metrics add up over the actors, and a checkpoint restores every agent's weights."""
    d = spec("ray", 8).model_dump(mode="json")
    block, fraction = 1024, 0.1
    d["genes"] = {"enabled": True, "block": block, "lazy": True}
    d["mutation"] = {"mode": "sparse", "fraction": fraction}
    model = SwarmModel(validate(d), seed=2)
    for _ in range(8):
        model.step()
    m = model.metrics
    assert m["births"] >= 0 and m["pool_genes"] > 0
    assert m["pool_bytes"] < m["pool_bytes_naive"] and m["pool_dedup_ratio"] > 1.5  # children share genes
    assert m["pool_unique_l1"] < 0.6 * m["pool_genes"]
    dicts = model.backend.colony_dicts(model)
    rows = torch.cat([c["params"] for c in dicts])  # (C S, P) materialised in the actors
    nb = -(-rows.shape[1] // block)
    ids, alive = model._global("agent_id"), model._global("alive")
    slot = {int(i): s for s, i in enumerate(ids.tolist()) if alive[s]}
    checked = 0
    for child, parent in model.lineage.births[:, :2].tolist():
        if child in slot and parent in slot and slot[child] // model.capacity == slot[parent] // model.capacity:
            a, b = rows[slot[child]], rows[slot[parent]]
            changed = sum(not torch.equal(a[j * block:(j + 1) * block], b[j * block:(j + 1) * block])
                          for j in range(nb))
            assert changed == max(1, round(fraction * nb))  # only the mutated blocks differ
            checked += 1
    assert checked > 0
    state = model.state_dict()
    model.close()
    again = SwarmModel(validate(d), seed=2)
    again.load_state_dict(state)
    back = torch.cat([c["params"] for c in again.backend.colony_dicts(again)])
    assert torch.equal(back[alive], rows[alive])
    again.step()  # and it runs on
    assert again.metrics["pool_genes"] > 0
    again.close()


def test_experience_sharing_on_ray_votes_out_a_flooding_colony(cluster):
    """Sharing on Ray, colonies of widths 16/32/48 (learned alignment): the exchange (driver) votes
    on the DHT's entries by uid. A malicious colony floods junk each step; its entries are voted
    out of every shard, its vote weight falls, each colony actor runs its own width, and a
    checkpoint of the exchange restores into a fresh Ray model."""
    d = spec("ray", 30, shards=3).model_dump(mode="json")
    d["colony"] = {**d["colony"], "count": 3}
    d["brain"] = {**d["brain"], "embed_dim": 32}
    d["sharing"] = {"enabled": True, "malicious_colonies": 1, "flood": 4, "widths": [16, 32, 48], "align": "learned"}
    model = SwarmModel(validate(d), seed=1)
    for _ in range(30):
        model.step()
    m = model.metrics
    import ray

    from swarm.ray_actors import ColonyWorker

    queries = torch.nn.functional.normalize(torch.randn(6, 32, generator=torch.Generator().manual_seed(0)), dim=1)
    for colony, heavy in zip(model.colonies, model.backend.colony_dicts(model)):
        assert (colony.adapter is None) == (colony.brain_params.embed_dim == 32)
        slots = colony.state.alive.nonzero().squeeze(1)[:6]
        remote = ray.get(model.backend.workers[colony.index].answer.remote(slots, queries))
        here = ColonyWorker(colony.index, heavy, colony.brain_params, model.noise, model.projection,
                            adapter=colony.adapter).answer(slots, queries)
        assert remote.shape == (6, 32)  # canonical width out, whatever the colony's own
        torch.testing.assert_close(remote, here)  # the actor runs its colony's width and adapter
    assert m["shared_batches"] > 0 and m["shared_rejected"] == 0
    assert m["entries_voted_out"] > 0 and m["malicious_vote_weight"] < 0.2
    ex = model.sharing
    gone = ex.entries.uid[~ex.entries.valid & (ex.entries.uid >= 0)]
    import ray

    held = torch.cat([ray.get(h.uids.remote()) for h in model.memory.handles.values()])
    assert len(gone) > 0 and not bool(torch.isin(gone, held).any())  # removed from every replica
    state = model.state_dict()
    model.close()
    again = SwarmModel(validate(d), seed=1)
    again.load_state_dict(state)
    assert torch.equal(again.sharing.entries.uid, ex.entries.uid)
    again.step()
    assert again.metrics["shared_batches"] > m["shared_batches"]
    again.close()
